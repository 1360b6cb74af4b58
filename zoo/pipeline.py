"""The text-to-video pipeline: the four components and the denoising loop between them.

It follows diffusers' ``HunyuanVideoPipeline`` step for step (argument names,
embedded guidance, true CFG with a negative prompt, the scaling factor applied
before decoding, the frames' rounding), but talks to each component only through
its contract, so any registered component of the right kind can stand in. Given an
``image`` and a backbone that declares image conditioning, it is diffusers'
``HunyuanVideoImageToVideoPipeline`` or ``HunyuanSkyreelsImageToVideoPipeline``
(see ``zoo.conditioning``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from contracts import (
    PipelineSpec,
    TextEmbeddings,
    check_latents,
    image_conditioning,
    latent_channels_of,
    takes_images,
)
from plugins.common.options import LoraSpec
from zoo import images as image_io
from zoo.conditioning import INTERLEAVE, ImageCondition, check_image_request, family
from zoo.residency import Components
from zoo.stages import Stage, StageLog

DIFFUSERS_DEFAULTS = {"height": 720, "width": 1280, "num_frames": 129, "num_inference_steps": 50}


def generation_settings(defaults: dict[str, Any], **given: int | None) -> dict[str, int]:
    """Height, width, frames and steps: those given, else the preset's ``defaults``, else diffusers'."""
    return {**DIFFUSERS_DEFAULTS, **defaults, **{k: v for k, v in given.items() if v is not None}}


@dataclass(frozen=True)
class GenerationResult:
    """``frames``: uint8 ``[B, F, H, W, 3]``; ``latents``: the denoised latents, unscaled;
    ``stages``: what each stage of the call took (loading included where it happened)."""

    frames: np.ndarray
    latents: np.ndarray
    stages: list[Stage] = field(default_factory=list)


def video_to_frames(video: np.ndarray) -> np.ndarray:
    """``[B, 3, F, H, W]`` in [-1, 1] -> uint8 ``[B, F, H, W, 3]``, rounded as diffusers does."""
    unit = np.clip(video / 2 + 0.5, 0.0, 1.0)
    return np.round(unit.transpose(0, 2, 3, 4, 1) * 255).astype(np.uint8)


def as_prompts(prompt: str | Sequence[str], what: str = "prompt") -> list[str]:
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, Sequence) else None
    if prompts is None or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{what} must be a string or a list of strings, got {prompt!r}")
    if what == "prompt" and not all(p.strip() for p in prompts):
        raise ValueError("prompt is empty; describe the video to generate")
    return prompts


def check_inputs(autoencoder_config: Any, num_frames: int, height: int, width: int,
                 num_inference_steps: int) -> None:
    """Refuse what the components cannot take; needs only the autoencoder's config, so it
    runs before any component is built."""
    temporal = autoencoder_config.temporal_compression
    if num_frames < 1 or (num_frames - 1) % temporal:
        near = max(1, round((num_frames - 1) / temporal)) * temporal + 1
        raise ValueError(f"num_frames must be {temporal}k+1 (1, {temporal + 1}, {2 * temporal + 1}, ...), "
                         f"got {num_frames}; try {near}")
    for name, value in (("height", height), ("width", width)):
        if value < 16 or value % 16:
            raise ValueError(f"{name} must be a positive multiple of 16, got {value}; "
                             f"try {max(16, round(value / 16) * 16)}")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")


@dataclass
class TextToVideoPipeline:
    """The assembled components, each reachable by its kind; call it to generate.

    ``defaults`` are the generation settings of the preset it came from (a tiny model
    is not meant for 129 frames at 720p); an argument given to the call wins, and
    without either, diffusers' defaults apply. ``components`` builds each kind when
    first needed and, under the ``low`` memory policy, releases it after its stage;
    ``log`` has the stages of every call so far.
    """

    spec: PipelineSpec
    components: Components
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def log(self) -> StageLog:
        return self.components.log

    @property
    def memory_policy(self) -> str:
        return self.components.policy

    @property
    def encoder(self) -> Any:
        return self.components.get("encoder")

    @property
    def backbone(self) -> Any:
        return self.components.get("backbone")

    @property
    def autoencoder(self) -> Any:
        return self.components.get("autoencoder")

    @property
    def scheduler(self) -> Any:
        return self.components.get("scheduler")

    def load_lora(self, path: str | Path, strength: float = 1.0, name: str | None = None) -> str:
        """Add a LoRA adapter to the backbone at ``strength``; its name. The adapter joins the
        backbone's ``loras`` option, so a backbone built later (the ``low`` memory policy builds
        it for each call) has it too; a backbone already built gets it now."""
        config = self.components.plan.configs["backbone"]
        if "loras" not in type(config).model_fields:
            raise ValueError(f"backbone {self.spec.backbone.name!r} takes no LoRA adapters")
        lora = {"path": Path(path), "strength": strength, "name": name or Path(path).stem}
        built = self.components.built.get("backbone")
        if built is not None:
            built.load_lora(path, strength, lora["name"])
        else:  # read and checked now, not at the first call
            from plugins.common.lora import read_lora

            read_lora(path)
        self.components.plan.configs["backbone"] = config.model_copy(
            update={"loras": [*config.loras, LoraSpec(**lora)]})
        return lora["name"]

    def config(self, kind: str) -> Any:
        """A kind's config, known without building the component."""
        return self.components.plan.configs[kind]

    def latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        ae = self.config("autoencoder")
        return (batch, latent_channels_of(self.config("backbone")), (num_frames - 1) // ae.temporal_compression + 1,
                height // ae.spatial_compression, width // ae.spatial_compression)

    @staticmethod
    def encode(encoder: Any, prompts: list[str], copies: int, prompt_template: dict | None,
               max_sequence_length: int | None, **image_options: Any) -> TextEmbeddings:
        """``image_options`` (``images``, ``image_embed_interleave``) go to an encoder that takes images."""
        options = {k: v for k, v in (("prompt_template", prompt_template),
                                     ("max_sequence_length", max_sequence_length)) if v is not None}
        text = encoder.encode(prompts, **options, **image_options)
        return text.select(np.repeat(np.arange(text.batch_size), copies))

    def __call__(
        self,
        prompt: str | Sequence[str],
        negative_prompt: str | Sequence[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float = 6.0,
        true_cfg_scale: float = 1.0,
        seed: int | None = None,
        latents: np.ndarray | None = None,
        prompt_template: dict | None = None,
        max_sequence_length: int | None = None,
        num_videos_per_prompt: int = 1,
        progress: bool = True,
        image: str | Path | np.ndarray | None = None,
        image_embed_interleave: int | None = None,
    ) -> GenerationResult:
        """``image``: for an image-to-video model, the image to animate (a file, ``[H, W, 3]`` uint8,
        or ``[B, H, W, 3]`` one per prompt); it is resized to ``height x width``."""
        settings = generation_settings(self.defaults, height=height, width=width, num_frames=num_frames,
                                       num_inference_steps=num_inference_steps)
        height, width = settings["height"], settings["width"]
        num_frames, num_inference_steps = settings["num_frames"], settings["num_inference_steps"]
        prompts = as_prompts(prompt)
        check_inputs(self.config("autoencoder"), num_frames, height, width, num_inference_steps)
        check_image_request(self.spec.backbone.name, self.config("backbone"), image is not None)
        batch = len(prompts) * num_videos_per_prompt
        pixels = None if image is None else image_io.as_image_batch(image, len(prompts))
        negatives = None
        if negative_prompt is not None and true_cfg_scale > 1:
            negatives = as_prompts(negative_prompt, "negative_prompt")
            negatives = negatives * len(prompts) if len(negatives) == 1 else negatives
            if len(negatives) != len(prompts):
                raise ValueError(f"negative_prompt: {len(negatives)} prompts for {len(prompts)} prompts")
        shape = self.latent_shape(batch, num_frames, height, width)
        if latents is None:
            latents = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        latents = check_latents(latents)
        if latents.shape != shape:
            raise ValueError(f"latents: expected shape {shape} for {batch} video(s) of {num_frames} frames "
                             f"at {height}x{width}, got {tuple(latents.shape)}")

        first_stage = len(self.log.stages)
        image_options = self.image_options(pixels, height, width, image_embed_interleave)
        text, negative_text = self.components.run("encoder", "encode", lambda encoder: tuple(
            None if group is None else self.encode(encoder, group, num_videos_per_prompt, prompt_template,
                                                   max_sequence_length, **options)
            for group, options in ((prompts, image_options[0]), (negatives, image_options[1]))))
        condition = None if pixels is None else self.image_condition(pixels, num_videos_per_prompt, height, width)
        if condition is not None:
            latents = condition.initial(latents)
        guidance = (np.full((batch,), guidance_scale, np.float32) if self.config("backbone").guidance_embeds
                    else None)
        scheduler = self.scheduler
        schedule = scheduler.schedule(num_inference_steps)
        extra = {} if condition is None else {"image": condition.latents}

        def denoise(backbone: Any) -> np.ndarray:
            sample = latents
            for index in tqdm(range(len(schedule)), desc="denoising", disable=not progress):
                timestep = np.full((batch,), schedule.timesteps[index], np.float32)
                velocity = backbone(sample, timestep, text, guidance, **extra)
                if negative_text is not None:
                    unconditional = backbone(sample, timestep, negative_text, guidance, **extra)
                    velocity = unconditional + true_cfg_scale * (velocity - unconditional)
                if condition is None:
                    sample = scheduler.step(velocity, schedule, index, sample)
                else:
                    sample = condition.step(scheduler, velocity, schedule, index, sample)
            return sample

        latents = self.components.run("backbone", "denoise", denoise)
        scaled = latents / np.float32(self.config("autoencoder").scaling_factor)
        videos = self.components.run("autoencoder", "decode", lambda autoencoder: [
            autoencoder.decode(scaled[i:i + 1]) for i in tqdm(range(batch), desc="decoding", disable=not progress)])
        video = np.concatenate(videos)
        if condition is not None:
            video = condition.frames(video, self.config("autoencoder").temporal_compression)
        return GenerationResult(frames=video_to_frames(video), latents=latents,
                                stages=self.log.stages[first_stage:])

    def image_options(self, pixels: np.ndarray | None, height: int, width: int,
                      interleave: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """What an encoder that takes images gets with the prompts and with the negative prompts:
        the image, and for the negatives a black one, as diffusers' I2V pipeline encodes them
        (the negatives at the encoder's own ``image_embed_interleave``, as diffusers' are)."""
        if pixels is None or not takes_images(self.config("encoder")):
            return {}, {}
        kind = image_conditioning(self.config("backbone"))
        interleave = interleave if interleave is not None else INTERLEAVE.get(kind)
        options = {} if interleave is None else {"image_embed_interleave": interleave}
        return {"images": pixels, **options}, {"images": np.zeros((1, height, width, 3), np.uint8)}

    def image_condition(self, pixels: np.ndarray, copies: int, height: int, width: int) -> ImageCondition:
        """The image's scaled latents, from the autoencoder (its ``encode`` stage)."""
        video = image_io.to_video(pixels, height, width)
        scale = np.float32(self.config("autoencoder").scaling_factor)
        encoded = self.components.run("autoencoder", "encode image", lambda autoencoder: np.concatenate(
            [autoencoder.encode(video[i:i + 1]) for i in range(len(video))]))
        backbone = self.config("backbone")
        return ImageCondition(latents=np.repeat(encoded * scale, copies, axis=0),
                              kind=image_conditioning(backbone), family=family(backbone))
