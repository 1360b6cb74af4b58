"""``from_pretrained``: a diffusers pipeline folder (``model_index.json``) to a pipeline.

diffusers' and transformers' class names in ``model_index.json`` map to registered
component names, so a folder written by ``HunyuanVideoPipeline.save_pretrained``
(or the published ``hunyuanvideo-community/HunyuanVideo`` layout) loads unchanged; so do
``HunyuanVideoImageToVideoPipeline`` folders (LLaVA text encoder, the transformer's
``image_condition_type``) and ``HunyuanSkyreelsImageToVideoPipeline`` ones (a 32-channel
transformer), whose transformer config makes the pipeline an image-to-video one.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts import PipelineSpec
from plugins.common.checkpoint import Checkpoint
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
    ("LlavaForConditionalGeneration", "CLIPTextModel"): "hunyuanvideo-i2v-text",
}
LoraArgument = str | Path | dict[str, Any]
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


def _file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    return path


def with_files(spec: PipelineSpec, transformer: str | Path | None = None, vae: str | Path | None = None,
               text_encoder: str | Path | None = None, text_encoder_2: str | Path | None = None,
               loras: Sequence[LoraArgument] = ()) -> PipelineSpec:
    """``spec`` with single files in place of its components' weights (their configs and the
    tokenizers still from the pipeline folder) and LoRA adapters on its backbone."""
    components = {kind: component.model_copy(deep=True) for kind, component in spec.components().items()}
    if transformer is not None:
        components["backbone"].weights = _file(transformer, "transformer")
    if vae is not None:
        components["autoencoder"].weights = _file(vae, "vae")
    for option, path in (("llm_options", text_encoder), ("clip_options", text_encoder_2)):
        if path is not None:
            encoder = components["encoder"]
            encoder.options = {**encoder.options, option: {**encoder.options.get(option, {}),
                                                           "weights_file": str(_file(path, option[:-8]))}}
    if loras:
        backbone = components["backbone"]
        given = [lora if isinstance(lora, dict) else {"path": str(_file(lora, "LoRA"))} for lora in loras]
        for lora in given:  # headers read now: a pickled or truncated file fails before anything is built
            Checkpoint(_file(lora["path"], "LoRA"))
        backbone.options = {**backbone.options, "loras": [*backbone.options.get("loras", []), *given]}
    return spec.replace(**components)


def from_pretrained(model: str | Path, memory: str = "auto", transformer: str | Path | None = None,
                    vae: str | Path | None = None, text_encoder: str | Path | None = None,
                    text_encoder_2: str | Path | None = None, loras: Sequence[LoraArgument] = (),
                    **kinds: str | dict[str, Any]) -> TextToVideoPipeline:
    """A pipeline from a preset name, a diffusers pipeline folder, or a Hugging Face repo id
    already in the local cache. ``kinds`` swap components by name, e.g. ``scheduler="flow-match-heun"``;
    ``memory`` is the residency policy: ``auto``, ``low`` (one component at a time) or ``fast``.

    ``transformer``, ``vae``, ``text_encoder`` (LLaMA) and ``text_encoder_2`` (CLIP-L) take single
    safetensors files instead of the folder's weights (ComfyUI's files, fp8 included; see
    docs/formats.md); ``loras`` are LoRA files, or dicts ``{path, strength, name}``.
    """
    spec, defaults = resolve_model(model, **kinds)
    spec = with_files(spec, transformer, vae, text_encoder, text_encoder_2, loras)
    return build(plan(spec), defaults, memory)
