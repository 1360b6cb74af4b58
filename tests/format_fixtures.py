"""Writing the formats people hold from a diffusers model, independently of the loaders under test.

``to_original`` is the inverse of diffusers' ``convert_hunyuan_video_transformer_to_diffusers``,
written out by hand: fused ``qkv`` (and the single blocks' ``linear1``) concatenated, the
final modulation's halves back in the original ``(shift, scale)`` order.
"""

from __future__ import annotations

import re

import torch

_DUAL = r"transformer_blocks\.(\d+)\."
_SINGLE = r"single_transformer_blocks\.(\d+)\."
_REFINER = r"context_embedder\.token_refiner\.refiner_blocks\.(\d+)\."
# diffusers module -> original module (modules that are not fused)
RENAMES = [
    (r"x_embedder\.proj", "img_in.proj"),
    (r"time_text_embed\.timestep_embedder\.linear_1", "time_in.mlp.0"),
    (r"time_text_embed\.timestep_embedder\.linear_2", "time_in.mlp.2"),
    (r"time_text_embed\.guidance_embedder\.linear_1", "guidance_in.mlp.0"),
    (r"time_text_embed\.guidance_embedder\.linear_2", "guidance_in.mlp.2"),
    (r"time_text_embed\.text_embedder\.linear_1", "vector_in.in_layer"),
    (r"time_text_embed\.text_embedder\.linear_2", "vector_in.out_layer"),
    (r"context_embedder\.proj_in", "txt_in.input_embedder"),
    (r"context_embedder\.time_text_embed\.timestep_embedder\.linear_1", "txt_in.t_embedder.mlp.0"),
    (r"context_embedder\.time_text_embed\.timestep_embedder\.linear_2", "txt_in.t_embedder.mlp.2"),
    (r"context_embedder\.time_text_embed\.text_embedder\.linear_1", "txt_in.c_embedder.linear_1"),
    (r"context_embedder\.time_text_embed\.text_embedder\.linear_2", "txt_in.c_embedder.linear_2"),
    (_REFINER + r"norm1", "txt_in.individual_token_refiner.blocks.{0}.norm1"),
    (_REFINER + r"norm2", "txt_in.individual_token_refiner.blocks.{0}.norm2"),
    (_REFINER + r"attn\.to_out\.0", "txt_in.individual_token_refiner.blocks.{0}.self_attn_proj"),
    (_REFINER + r"ff\.net\.0\.proj", "txt_in.individual_token_refiner.blocks.{0}.mlp.fc1"),
    (_REFINER + r"ff\.net\.2", "txt_in.individual_token_refiner.blocks.{0}.mlp.fc2"),
    (_REFINER + r"norm_out\.linear", "txt_in.individual_token_refiner.blocks.{0}.adaLN_modulation.1"),
    (_DUAL + r"norm1\.linear", "double_blocks.{0}.img_mod.linear"),
    (_DUAL + r"attn\.norm_q", "double_blocks.{0}.img_attn_q_norm"),
    (_DUAL + r"attn\.norm_k", "double_blocks.{0}.img_attn_k_norm"),
    (_DUAL + r"attn\.to_out\.0", "double_blocks.{0}.img_attn_proj"),
    (_DUAL + r"ff\.net\.0\.proj", "double_blocks.{0}.img_mlp.fc1"),
    (_DUAL + r"ff\.net\.2", "double_blocks.{0}.img_mlp.fc2"),
    (_DUAL + r"norm1_context\.linear", "double_blocks.{0}.txt_mod.linear"),
    (_DUAL + r"attn\.norm_added_q", "double_blocks.{0}.txt_attn_q_norm"),
    (_DUAL + r"attn\.norm_added_k", "double_blocks.{0}.txt_attn_k_norm"),
    (_DUAL + r"attn\.to_add_out", "double_blocks.{0}.txt_attn_proj"),
    (_DUAL + r"ff_context\.net\.0\.proj", "double_blocks.{0}.txt_mlp.fc1"),
    (_DUAL + r"ff_context\.net\.2", "double_blocks.{0}.txt_mlp.fc2"),
    (_SINGLE + r"proj_out", "single_blocks.{0}.linear2"),
    (_SINGLE + r"attn\.norm_q", "single_blocks.{0}.q_norm"),
    (_SINGLE + r"attn\.norm_k", "single_blocks.{0}.k_norm"),
    (_SINGLE + r"norm\.linear", "single_blocks.{0}.modulation.linear"),
    (r"proj_out", "final_layer.linear"),
]
# original fused module -> the diffusers modules concatenated into it, in order
FUSED = [
    (_DUAL + r"attn\.to_q", "double_blocks.{0}.img_attn_qkv", ["attn.to_q", "attn.to_k", "attn.to_v"],
     "transformer_blocks.{0}."),
    (_DUAL + r"attn\.add_q_proj", "double_blocks.{0}.txt_attn_qkv",
     ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"], "transformer_blocks.{0}."),
    (_SINGLE + r"attn\.to_q", "single_blocks.{0}.linear1", ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"],
     "single_transformer_blocks.{0}."),
    (_REFINER + r"attn\.to_q", "txt_in.individual_token_refiner.blocks.{0}.self_attn_qkv",
     ["attn.to_q", "attn.to_k", "attn.to_v"], "context_embedder.token_refiner.refiner_blocks.{0}."),
]

def original_module(module: str) -> tuple[str, list[str]]:
    """The original module a diffusers module goes into, and the diffusers modules fused there
    in order (one: a plain rename)."""
    for pattern, target, parts, prefix in FUSED:
        for part in parts:
            match = re.fullmatch(pattern.replace(re.escape(parts[0]), re.escape(part)), module)
            if match:
                return target.format(*match.groups()), [prefix.format(*match.groups()) + p for p in parts]
    if module == "norm_out.linear":
        return "final_layer.adaLN_modulation.1", [module]
    for pattern, target in RENAMES:
        match = re.fullmatch(pattern, module)
        if match:
            return target.format(*match.groups()), [module]
    raise KeyError(f"no original name for {module}")


def _cat(values: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` that also takes fp8 (concatenated as bytes)."""
    if values[0].dtype.itemsize == 1 and values[0].is_floating_point():
        return torch.cat([v.view(torch.uint8) for v in values]).view(values[0].dtype)
    return torch.cat(values)


def to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers ``HunyuanVideoTransformer3DModel`` state dict in the original key layout."""
    out = {}
    for key in state:
        module, _, param = key.rpartition(".")
        target, parts = original_module(module)
        if parts[0] != module:
            continue
        values = _cat([state[f"{part}.{param}"] for part in parts])
        if module == "norm_out.linear":  # diffusers (scale, shift) -> original (shift, scale)
            half = values.shape[0] // 2
            values = _cat([values[half:], values[:half]])
        out[f"{target}.{param}"] = values.contiguous()
    return out


def from_original(original: dict[str, torch.Tensor], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``to_original``, for the names and shapes of the state dict ``like``."""
    out = {}
    for key in like:
        module, _, param = key.rpartition(".")
        target, parts = original_module(module)
        values = original[f"{target}.{param}"]
        if module == "norm_out.linear":
            shift, scale = values.chunk(2)
            values = torch.cat([scale, shift])
        sizes = [like[f"{part}.{param}"].shape[0] for part in parts]
        out[key] = torch.split(values, sizes)[parts.index(module)].contiguous()
    return out
