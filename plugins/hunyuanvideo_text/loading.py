"""Where an encoder half finds its tokenizer, architecture and weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from plugins.common.checkpoint import CheckpointError


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise CheckpointError(f"{what}: folder {path} does not exist")
    return path


def resolve(name: str, config: Any, weights: Path | None,
            config_class: type[PretrainedConfig]) -> tuple[PreTrainedTokenizerBase, PretrainedConfig,
                                                            Path | None]:
    """The tokenizer, the transformers config and the model folder (None for a random build)
    of the half ``name``, from a pipeline folder or from the options of a random build."""
    if weights is None:
        missing = [option for option in ("tokenizer", "text_config") if getattr(config, option) is None]
        if missing:
            raise ValueError(
                f"encoder {name!r} without weights builds a random model and needs the options "
                f"{' and '.join(missing)}: 'tokenizer' (a tokenizer folder) and 'text_config' "
                f"(the {config_class.__name__} fields); or pass weights=<a pipeline folder>")
        model_config, model_folder = config_class(**config.text_config), None
    else:
        if config.text_config is not None:
            raise ValueError(f"encoder {name!r}: option 'text_config' is for a random build; with weights "
                             f"the architecture is {weights / config.subfolder}/config.json")
        model_folder = _folder(Path(weights) / config.subfolder, f"encoder {name!r}")
        model_config = config_class.from_pretrained(model_folder)
        if config.weights_file is not None:  # a single file: the architecture still from the folder
            if not Path(config.weights_file).is_file():
                raise CheckpointError(f"encoder {name!r}: weights file {config.weights_file} does not exist")
            model_folder = Path(config.weights_file)
    tokenizer_folder = config.tokenizer or Path(weights) / config.tokenizer_subfolder
    tokenizer = AutoTokenizer.from_pretrained(_folder(Path(tokenizer_folder), f"encoder {name!r} tokenizer"))
    return tokenizer, model_config, model_folder
