"""Named pipelines: what ``--model NAME`` and ``zoo.from_pretrained(NAME)`` accept besides folders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts import PipelineSpec


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    spec: Callable[[], PipelineSpec]  # resolved only when the preset is used
    defaults: dict[str, Any] = field(default_factory=dict)  # generation settings that suit it


def _hunyuanvideo() -> PipelineSpec:
    from zoo.pretrained import cached_repo, spec_from_folder

    return spec_from_folder(cached_repo("hunyuanvideo-community/HunyuanVideo"))


def _tiny() -> PipelineSpec:
    from plugins.hunyuanvideo_text.config import DEFAULT_TEMPLATE
    from zoo.pretrained import spec_from_folder
    from zoo.tiny import tiny_pipeline_folder

    spec = spec_from_folder(tiny_pipeline_folder())
    # The tiny tokenizer is byte-level: the template's crop_start is counted, not LLaMA-3's 95.
    return spec.replace(encoder={"name": spec.encoder.name, "options": {"prompt_template": DEFAULT_TEMPLATE}})


def _hunyuanvideo_i2v() -> PipelineSpec:
    from zoo.pretrained import cached_repo, spec_from_folder

    return spec_from_folder(cached_repo("hunyuanvideo-community/HunyuanVideo-I2V"))


def _skyreels() -> PipelineSpec:
    """SkyReels-V1 is a transformer only: HunyuanVideo's encoders, VAE and scheduler around it."""
    from zoo.pretrained import cached_repo, spec_from_folder

    spec = spec_from_folder(cached_repo("hunyuanvideo-community/HunyuanVideo"))
    return spec.replace(backbone={"name": spec.backbone.name, "weights": cached_repo(SKYREELS_REPO)})


def _skyreels_tiny() -> PipelineSpec:
    from plugins.hunyuanvideo_text.config import DEFAULT_TEMPLATE
    from zoo.pretrained import spec_from_folder
    from zoo.tiny import tiny_skyreels_folder

    spec = spec_from_folder(tiny_skyreels_folder())
    return spec.replace(encoder={"name": spec.encoder.name, "options": {"prompt_template": DEFAULT_TEMPLATE}})


def _hunyuanvideo_i2v_tiny() -> PipelineSpec:
    from zoo.pretrained import spec_from_folder
    from zoo.tiny import tiny_i2v_folder
    from zoo.tiny_llava import prompt_template

    spec = spec_from_folder(tiny_i2v_folder())
    # The tiny tokenizer is byte-level: the template's token counts are its own, not LLaMA-3's.
    return spec.replace(encoder={"name": spec.encoder.name, "options": {"prompt_template": prompt_template()}})


SKYREELS_REPO = "Skywork/SkyReels-V1-Hunyuan-I2V"
PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("hunyuanvideo", "HunyuanVideo 13B from hunyuanvideo-community/HunyuanVideo in the local "
           "Hugging Face cache", _hunyuanvideo,
           dict(height=720, width=1280, num_frames=129, num_inference_steps=50)),
    Preset("hunyuanvideo-tiny", "every component tiny, random seeded weights, built here: proves the "
           "install, not the model", _tiny,
           dict(height=64, width=64, num_frames=9, num_inference_steps=10)),
    Preset("hunyuanvideo-i2v", "HunyuanVideo-I2V (image to video) from hunyuanvideo-community/HunyuanVideo-I2V "
           "in the local Hugging Face cache", _hunyuanvideo_i2v,
           dict(height=720, width=1280, num_frames=129, num_inference_steps=50)),
    Preset("hunyuanvideo-i2v-tiny", "HunyuanVideo-I2V (token_replace) with every component tiny, random "
           "seeded weights, built here: proves the install, not the model", _hunyuanvideo_i2v_tiny,
           dict(height=64, width=64, num_frames=9, num_inference_steps=10)),
    Preset("skyreels-v1-i2v", f"SkyReels-V1 (image to video): the {SKYREELS_REPO} transformer with "
           f"hunyuanvideo-community/HunyuanVideo's encoders and VAE, both in the local Hugging Face cache",
           _skyreels, dict(height=544, width=960, num_frames=97, num_inference_steps=50)),
    Preset("skyreels-v1-tiny", "SkyReels-V1 with every component tiny, random seeded weights, built here: "
           "proves the install, not the model", _skyreels_tiny,
           dict(height=64, width=64, num_frames=9, num_inference_steps=10)),
]}
