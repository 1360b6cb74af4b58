"""``from_pretrained``: a diffusers pipeline folder (``model_index.json``) to a pipeline.

diffusers' and transformers' class names in ``model_index.json`` map to registered
component names, so a folder written by ``HunyuanVideoPipeline.save_pretrained``
(or the published ``hunyuanvideo-community/HunyuanVideo`` layout) loads unchanged.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from contracts import PipelineSpec
from zoo.assembly import build, plan
from zoo.pipeline import TextToVideoPipeline
from zoo.presets import PRESETS

# model_index.json entry -> (kind, registered name), by the entry's class name.
CLASS_NAMES: dict[str, tuple[str, str]] = {
    "HunyuanVideoTransformer3DModel": ("backbone", "hunyuanvideo-transformer"),
    "AutoencoderKLHunyuanVideo": ("autoencoder", "hunyuanvideo-vae"),
    "FlowMatchEulerDiscreteScheduler": ("scheduler", "flow-match-euler"),
    "FlowMatchHeunDiscreteScheduler": ("scheduler", "flow-match-heun"),
}
# The text encoders come as a pair of entries that make one encoder.
TEXT_ENCODERS: dict[tuple[str, str], str] = {
    ("LlamaModel", "CLIPTextModel"): "hunyuanvideo-text",
}
ENTRIES = {"transformer": "backbone", "vae": "autoencoder", "scheduler": "scheduler"}


def class_name(index: dict[str, Any], entry: str) -> str:
    value = index.get(entry)
    if not (isinstance(value, list) and len(value) == 2):
        raise ValueError(f"model_index.json has no {entry!r} entry of the form [library, class]")
    return value[1]


def spec_from_folder(folder: Path, **overrides: str | dict[str, Any]) -> PipelineSpec:
    """The ``PipelineSpec`` of a diffusers pipeline folder; ``overrides`` swap kinds by name."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder} has no model_index.json; is it a diffusers pipeline folder?")
    index = json.loads(index_path.read_text())
    names: dict[str, Any] = {}
    for entry, kind in ENTRIES.items():
        cls = class_name(index, entry)
        if cls not in CLASS_NAMES or CLASS_NAMES[cls][0] != kind:
            raise ValueError(f"model_index.json: {entry} is a {cls}, which no component of kind {kind!r} "
                             f"reads; known: {', '.join(c for c, (k, _) in CLASS_NAMES.items() if k == kind)}")
        names[kind] = CLASS_NAMES[cls][1]
    pair = (class_name(index, "text_encoder"), class_name(index, "text_encoder_2"))
    if pair not in TEXT_ENCODERS:
        raise ValueError(f"model_index.json: text encoders {pair[0]} + {pair[1]} are not supported; "
                         f"known: {', '.join(' + '.join(p) for p in TEXT_ENCODERS)}")
    names["encoder"] = TEXT_ENCODERS[pair]
    names.update(overrides)
    return PipelineSpec.model_validate({**names, "weights": folder})


def cached_repo(repo_id: str) -> Path:
    """A Hugging Face repo id already in the local cache (never downloads)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{repo_id!r} is not in the local Hugging Face cache and nothing is downloaded at run time; "
            f"fetch it once with `huggingface-cli download {repo_id}` and pass the repo id or its folder"
        ) from None


def resolve_model(model: str | Path, **kinds: str | dict[str, Any]) -> tuple[PipelineSpec, dict[str, Any]]:
    """The spec (and generation defaults) of a preset name, a diffusers pipeline folder, or a
    Hugging Face repo id already in the local cache; ``kinds`` swap components by name."""
    if str(model) in PRESETS:
        preset = PRESETS[str(model)]
        return preset.spec().replace(**kinds), preset.defaults
    folder = Path(model)
    if not folder.is_dir():
        if folder.exists() or str(model).count("/") != 1 or str(model).startswith((".", "/")):
            close = difflib.get_close_matches(str(model), PRESETS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise FileNotFoundError(f"model {str(model)!r}: no such folder or preset; {hint}give a pipeline "
                                    f"folder, a preset ({', '.join(PRESETS)}) or a Hugging Face repo id in the "
                                    f"local cache")
        folder = cached_repo(str(model))
    return spec_from_folder(folder, **kinds), {}


def from_pretrained(model: str | Path, memory: str = "auto", **kinds: str | dict[str, Any]) -> TextToVideoPipeline:
    """A pipeline from a preset name, a diffusers pipeline folder, or a Hugging Face repo id
    already in the local cache. ``kinds`` swap components by name, e.g. ``scheduler="flow-match-heun"``;
    ``memory`` is the residency policy: ``auto``, ``low`` (one component at a time) or ``fast``.
    """
    spec, defaults = resolve_model(model, **kinds)
    return build(plan(spec), defaults, memory)
