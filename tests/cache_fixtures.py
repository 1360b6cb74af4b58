"""What the cached backbones' tests share: a random diffusers transformer saved to a folder, a prompt and a
negative prompt, and a true-CFG denoising loop run through our backbone or through diffusers' model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import HunyuanVideoTransformer3DModel

import zoo
from contracts import TextEmbeddings
from plugins.hunyuanvideo_transformer.backbone import HunyuanVideoTransformer

GUIDANCE = 6.0
TRUE_CFG = 3.0
TINY = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, rope_axes_dim=(2, 2, 4),
            num_layers=2, num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1,
            guidance_embeds=True, text_embed_dim=6, pooled_projection_dim=4)
Velocity = Callable[[np.ndarray, float, int], np.ndarray]  # (latents, timestep, text index) -> velocity


def reference_folder(tmp_path: Path, seed: int = 0, **options) -> tuple[HunyuanVideoTransformer3DModel, Path]:
    """A diffusers model with every parameter random, saved to ``tmp_path``."""
    torch.manual_seed(seed)
    model = HunyuanVideoTransformer3DModel(**{**TINY, **options}).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.1)
    model.save_pretrained(tmp_path)
    return model, tmp_path


def texts(seed: int = 1) -> list[TextEmbeddings]:
    """A prompt and a negative prompt, right-padded differently."""
    rng = np.random.default_rng(seed)
    return [TextEmbeddings(hidden_states=rng.standard_normal((1, 5, TINY["text_embed_dim"]), dtype=np.float32),
                           attention_mask=np.arange(5)[None] < real,
                           pooled=rng.standard_normal((1, TINY["pooled_projection_dim"]), dtype=np.float32))
            for real in (3, 5)]


def latents(seed: int, shape: tuple[int, ...] = (1, 4, 2, 4, 4)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def denoise(velocity: Velocity, start: np.ndarray, scheduler_name: str, steps: int) -> list[np.ndarray]:
    """A true-CFG sampling loop; returns every backbone output, cond and uncond alternating, then the result."""
    scheduler = zoo.load_component("scheduler", scheduler_name)
    schedule = scheduler.schedule(steps)
    sample, outputs = start, []
    for index, timestep in enumerate(schedule.timesteps):
        cond, uncond = velocity(sample, float(timestep), 0), velocity(sample, float(timestep), 1)
        outputs += [cond, uncond]
        sample = scheduler.step(uncond + TRUE_CFG * (cond - uncond), schedule, index, sample)
    return [*outputs, sample]


def ours_velocity(backbone: HunyuanVideoTransformer, decisions: list[bool] | None = None) -> Velocity:
    """Our backbone in the loop; with ``decisions``, each call's skip decision is appended to it."""
    prompts = texts()

    def call(sample: np.ndarray, timestep: float, text: int) -> np.ndarray:
        out = backbone(sample, np.array([timestep], np.float32), prompts[text], guidance=GUIDANCE)
        if decisions is not None:
            decisions.append(backbone.stats.last_skipped)
        return out

    return call


def diffusers_output(model: HunyuanVideoTransformer3DModel, sample: np.ndarray, timestep: float,
                     prompt: TextEmbeddings) -> np.ndarray:
    """diffusers' model called as ``HunyuanVideoPipeline`` calls it."""
    with torch.no_grad():
        return model(torch.from_numpy(sample), torch.tensor([timestep]), torch.from_numpy(prompt.hidden_states),
                     torch.from_numpy(prompt.attention_mask), torch.from_numpy(prompt.pooled),
                     guidance=torch.tensor([GUIDANCE * 1000.0]), return_dict=False)[0].numpy()


def assert_outputs_close(actual: list[np.ndarray], expected: list[np.ndarray], tolerance: float) -> None:
    """Each output within ``tolerance`` of the expected one's scale (at least 1)."""
    for index, (ours, theirs) in enumerate(zip(actual, expected, strict=True)):
        scale = max(1.0, float(np.abs(theirs).max()))
        diff = float(np.abs(ours - theirs).max())
        assert diff <= tolerance * scale, f"output {index}: max abs diff {diff:.3g} at scale {scale:.3g}"
