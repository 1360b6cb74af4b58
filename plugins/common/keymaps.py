"""Key layouts of the single files people hold, mapped to the diffusers names the models use.

A layout is recognised from the file's keys alone (no config travels with a single file),
and a file that is recognised as another model is refused by name rather than failing on
a list of missing tensors. The HunyuanVideo transformer's original (Tencent, ComfyUI)
layout maps as diffusers' ``convert_hunyuan_video_transformer_to_diffusers`` maps it:
fused ``qkv`` projections split in three, the single blocks' ``linear1`` split into
``to_q``/``to_k``/``to_v``/``proj_mlp``, and the final modulation's ``(shift, scale)``
halves swapped to diffusers' ``(scale, shift)``. Split sizes come from the model's own
shapes (diffusers assumes the 13B model's width of 3072), and each piece is a run of rows
of a stored tensor, so a mapped weight is a view of the tensor read from the file, not a
copy. LoRA files use the same module rules (see ``lora``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from plugins.common.checkpoint import CheckpointError, listed


@dataclass(frozen=True)
class Rule:
    """An original module name (a regex) and the diffusers module(s) it becomes; its groups
    fill the ``{0}``, ``{1}`` of the targets. Several targets split the rows in order;
    ``swap`` reverses the two halves of one target."""

    source: str
    targets: tuple[str, ...]
    swap: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", re.compile(self.source))


@dataclass(frozen=True)
class Piece:
    """Rows ``start:stop`` (dim 0) of the stored tensor ``key``."""

    key: str
    start: int
    stop: int


@dataclass(frozen=True)
class Layout:
    """A family of files: what it is, how to tell (``signature``: any of these keys, after a
    ``prefixes`` one is removed), which model it is for (``fits``: a parameter name of that
    model), and how its names map (``rules``; a module no rule names keeps its name).
    ``drop``: keys that carry nothing the model uses (regexes)."""

    name: str
    signature: tuple[str, ...]
    fits: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    prefixes: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    loads: bool = field(default=True)

    def strip(self, key: str) -> str:
        for prefix in self.prefixes:
            if key.startswith(prefix):
                return key[len(prefix):]
        return key

    def recognises(self, keys: set[str]) -> bool:
        stripped = keys | {self.strip(key) for key in keys}
        return any(key in stripped for key in self.signature)

    def is_for(self, expected: Mapping[str, object]) -> bool:
        return self.loads and any(name in expected for name in self.fits)

    def dropped(self, key: str) -> bool:
        return any(re.fullmatch(pattern, self.strip(key)) for pattern in self.drop)

    def targets(self, module: str) -> tuple[tuple[str, ...], bool]:
        """The diffusers module(s) an original module becomes, and whether its halves swap."""
        for rule in self.rules:
            match = rule.pattern.fullmatch(module)
            if match:
                return tuple(target.format(*match.groups()) for target in rule.targets), rule.swap
        return (module,), False


_BLOCK = r"double_blocks\.(\d+)\."
_SINGLE = r"single_blocks\.(\d+)\."
_REFINER = r"txt_in\.individual_token_refiner\.blocks\.(\d+)\."
_DUAL_OUT = "transformer_blocks.{0}."
_SINGLE_OUT = "single_transformer_blocks.{0}."
_REFINER_OUT = "context_embedder.token_refiner.refiner_blocks.{0}."


def _rule(source: str, *targets: str, swap: bool = False) -> Rule:
    return Rule(source, targets, swap)


TRANSFORMER_RULES = (
    _rule(r"img_in\.proj", "x_embedder.proj"),
    _rule(r"time_in\.mlp\.0", "time_text_embed.timestep_embedder.linear_1"),
    _rule(r"time_in\.mlp\.2", "time_text_embed.timestep_embedder.linear_2"),
    _rule(r"guidance_in\.mlp\.0", "time_text_embed.guidance_embedder.linear_1"),
    _rule(r"guidance_in\.mlp\.2", "time_text_embed.guidance_embedder.linear_2"),
    _rule(r"vector_in\.in_layer", "time_text_embed.text_embedder.linear_1"),
    _rule(r"vector_in\.out_layer", "time_text_embed.text_embedder.linear_2"),
    _rule(r"txt_in\.input_embedder", "context_embedder.proj_in"),
    _rule(r"txt_in\.t_embedder\.mlp\.0", "context_embedder.time_text_embed.timestep_embedder.linear_1"),
    _rule(r"txt_in\.t_embedder\.mlp\.2", "context_embedder.time_text_embed.timestep_embedder.linear_2"),
    _rule(r"txt_in\.c_embedder\.linear_1", "context_embedder.time_text_embed.text_embedder.linear_1"),
    _rule(r"txt_in\.c_embedder\.linear_2", "context_embedder.time_text_embed.text_embedder.linear_2"),
    _rule(_REFINER + r"norm1", _REFINER_OUT + "norm1"),
    _rule(_REFINER + r"norm2", _REFINER_OUT + "norm2"),
    _rule(_REFINER + r"self_attn_qkv", *(_REFINER_OUT + f"attn.to_{x}" for x in "qkv")),
    _rule(_REFINER + r"self_attn_proj", _REFINER_OUT + "attn.to_out.0"),
    _rule(_REFINER + r"mlp\.fc1", _REFINER_OUT + "ff.net.0.proj"),
    _rule(_REFINER + r"mlp\.fc2", _REFINER_OUT + "ff.net.2"),
    _rule(_REFINER + r"adaLN_modulation\.1", _REFINER_OUT + "norm_out.linear"),
    _rule(_BLOCK + r"img_mod\.linear", _DUAL_OUT + "norm1.linear"),
    _rule(_BLOCK + r"img_attn_qkv", *(_DUAL_OUT + f"attn.to_{x}" for x in "qkv")),
    _rule(_BLOCK + r"img_attn_q_norm", _DUAL_OUT + "attn.norm_q"),
    _rule(_BLOCK + r"img_attn_k_norm", _DUAL_OUT + "attn.norm_k"),
    _rule(_BLOCK + r"img_attn_proj", _DUAL_OUT + "attn.to_out.0"),
    _rule(_BLOCK + r"img_mlp\.fc1", _DUAL_OUT + "ff.net.0.proj"),
    _rule(_BLOCK + r"img_mlp\.fc2", _DUAL_OUT + "ff.net.2"),
    _rule(_BLOCK + r"txt_mod\.linear", _DUAL_OUT + "norm1_context.linear"),
    _rule(_BLOCK + r"txt_attn_qkv", *(_DUAL_OUT + f"attn.add_{x}_proj" for x in "qkv")),
    _rule(_BLOCK + r"txt_attn_q_norm", _DUAL_OUT + "attn.norm_added_q"),
    _rule(_BLOCK + r"txt_attn_k_norm", _DUAL_OUT + "attn.norm_added_k"),
    _rule(_BLOCK + r"txt_attn_proj", _DUAL_OUT + "attn.to_add_out"),
    _rule(_BLOCK + r"txt_mlp\.fc1", _DUAL_OUT + "ff_context.net.0.proj"),
    _rule(_BLOCK + r"txt_mlp\.fc2", _DUAL_OUT + "ff_context.net.2"),
    _rule(_SINGLE + r"linear1", *(_SINGLE_OUT + f"attn.to_{x}" for x in "qkv"), _SINGLE_OUT + "proj_mlp"),
    _rule(_SINGLE + r"linear2", _SINGLE_OUT + "proj_out"),
    _rule(_SINGLE + r"q_norm", _SINGLE_OUT + "attn.norm_q"),
    _rule(_SINGLE + r"k_norm", _SINGLE_OUT + "attn.norm_k"),
    _rule(_SINGLE + r"modulation\.linear", _SINGLE_OUT + "norm.linear"),
    _rule(r"final_layer\.linear", "proj_out"),
    _rule(r"final_layer\.adaLN_modulation\.1", "norm_out.linear", swap=True),
)

TRANSFORMER_ORIGINAL = Layout(
    "the HunyuanVideo transformer in the original (Tencent/ComfyUI) layout",
    signature=("double_blocks.0.img_attn_qkv.weight", "single_blocks.0.linear1.weight", "img_in.proj.weight"),
    fits=("x_embedder.proj.weight",), rules=TRANSFORMER_RULES,
    prefixes=("model.diffusion_model.", "diffusion_model.", "module."))

LAYOUTS: tuple[Layout, ...] = (
    TRANSFORMER_ORIGINAL,
    Layout("a LLaMA model in transformers' LlamaForCausalLM layout (llava_llama3_fp16.safetensors)",
           signature=("model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight"),
           fits=("layers.0.self_attn.q_proj.weight", "embed_tokens.weight"), prefixes=("model.",),
           drop=(r"lm_head\.weight",)),
    Layout("a CLIP text model (clip_l.safetensors)",
           signature=("text_model.encoder.layers.0.self_attn.q_proj.weight",),
           fits=("text_model.encoder.layers.0.self_attn.q_proj.weight",),
           drop=(r"text_projection\.weight", r"logit_scale", r"text_model\.embeddings\.position_ids")),
    # transformers renamed LlavaForConditionalGeneration's modules: 4 saved ``language_model.model.``,
    # ``language_model.lm_head``, ``vision_tower.vision_model.``; 5 names them ``model.language_model.``,
    # ``lm_head``, ``model.vision_tower.`` (``model.vision_tower.vision_model.`` in between) and saves
    # them as 4 did, less the vision tower's ``vision_model.``.
    Layout("a LLaVA model (LlavaForConditionalGeneration)",
           signature=("language_model.model.embed_tokens.weight", "model.language_model.embed_tokens.weight"),
           fits=("model.language_model.embed_tokens.weight",),
           rules=(_rule(r"language_model\.model\.(.+)", "model.language_model.{0}"),
                  _rule(r"(?:model\.)?vision_tower\.(?:vision_model\.)?(.+)", "model.vision_tower.{0}"),
                  _rule(r"multi_modal_projector\.(.+)", "model.multi_modal_projector.{0}")),
           drop=(r"(?:language_model\.)?lm_head\.weight", r".*\.position_ids",
                 r"(?:model\.)?vision_tower\.(?:vision_model\.)?post_layernorm\.\w+")),
    # Recognised only, to say what a file is when it is given for the wrong component.
    Layout("the HunyuanVideo transformer in diffusers' layout",
           signature=("x_embedder.proj.weight", "context_embedder.proj_in.weight"), loads=False),
    Layout("the HunyuanVideo VAE", signature=("decoder.conv_in.conv.weight", "encoder.conv_in.conv.weight",
                                              "first_stage_model.decoder.conv_in.conv.weight"), loads=False),
    Layout("a LLaMA model", signature=("layers.0.self_attn.q_proj.weight", "embed_tokens.weight"), loads=False),
    Layout("a CLIP text model", signature=("encoder.layers.0.self_attn.q_proj.weight",), loads=False),
    Layout("a Flux transformer", signature=("double_blocks.0.img_attn.qkv.weight",),
           prefixes=("model.diffusion_model.", "diffusion_model."), loads=False),
    Layout("a Stable Diffusion UNet", signature=("model.diffusion_model.input_blocks.0.0.weight",), loads=False),
    Layout("a Wan transformer", signature=("patch_embedding.weight", "model.diffusion_model.patch_embedding.weight"),
           loads=False),
)


def recognise(keys: set[str]) -> list[Layout]:
    """The layouts whose signature the keys carry."""
    if any(".lora_" in key or key.endswith(".alpha") for key in keys):
        return [Layout("a LoRA adapter (load it with --lora / load_lora)", signature=(), loads=False)]
    return [layout for layout in LAYOUTS if layout.recognises(keys)]


def split(key: str, rows: int, targets: tuple[str, ...], swap: bool,
          rows_of: Mapping[str, int]) -> dict[str, tuple[Piece, ...]]:
    """The pieces of ``key`` (``rows`` rows) that make each target: the targets' own row counts
    (``rows_of``, where the model has them) in order, else equal parts; or two swapped halves."""
    if swap:
        half = rows // 2
        return {targets[0]: (Piece(key, half, rows), Piece(key, 0, half))}
    if len(targets) == 1:
        return {targets[0]: (Piece(key, 0, rows),)}
    sizes = [rows_of.get(target) for target in targets]
    if None in sizes:
        sizes = [rows // len(targets)] * len(targets)
    if sum(sizes) != rows:
        raise CheckpointError(f"{key}: {rows} rows cannot be split into {', '.join(targets)} of "
                              f"{', '.join(map(str, sizes))} rows; does the file belong to this model's config?")
    pieces, start = {}, 0
    for target, size in zip(targets, sizes, strict=True):
        pieces[target] = (Piece(key, start, start + size),)
        start += size
    return pieces


@dataclass(frozen=True)
class KeyMap:
    """Each model parameter's pieces of stored tensors, and the file's keys the model does
    not use (dropped by the layout)."""

    layout: str
    pieces: dict[str, tuple[Piece, ...]]
    dropped: tuple[str, ...] = ()


def resolve(shapes: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], what: str,
            where: object) -> KeyMap:
    """How the tensors ``shapes`` of a file fill a model whose parameters are ``expected``.

    A file in the model's own names maps as it is; one in a layout for this model is renamed;
    one recognised as another model is refused, naming what it looks like.
    """
    keys = set(shapes)
    found = recognise(keys)
    own = [layout for layout in found if layout.is_for(expected)]
    if keys & set(expected) and not (own and own[0].rules):
        drops = own[0] if own else None
        kept = [key for key in shapes if drops is None or not drops.dropped(key)]
        return KeyMap("diffusers", {key: (Piece(key, 0, _rows(shapes[key])),) for key in kept},
                      tuple(sorted(keys - set(kept))))
    if own:
        return apply(own[0], shapes, {name: _rows(shape) for name, shape in expected.items()})
    if found:
        raise CheckpointError(f"{where}: this file looks like {found[0].name}, not the {what}")
    return KeyMap("diffusers", {key: (Piece(key, 0, _rows(shapes[key])),) for key in shapes})


def _rows(shape: tuple[int, ...]) -> int:
    return shape[0] if shape else 1


def apply(layout: Layout, shapes: Mapping[str, tuple[int, ...]], rows_of: Mapping[str, int]) -> KeyMap:
    """The key map of a file in ``layout``."""
    pieces: dict[str, tuple[Piece, ...]] = {}
    dropped, clashes = [], []
    for key, shape in shapes.items():
        if layout.dropped(key):
            dropped.append(key)
            continue
        module, _, param = layout.strip(key).rpartition(".")
        targets, swap = layout.targets(module)
        named = tuple(f"{target}.{param}" for target in targets)
        for name, parts in split(key, _rows(shape), named, swap, rows_of).items():
            if name in pieces:
                clashes.append(name)
            pieces[name] = parts
    if clashes:
        raise CheckpointError(f"{layout.name}: several tensors map to {listed(sorted(clashes))}")
    return KeyMap(layout.name, pieces, tuple(sorted(dropped)))


def shapes_of(key_map: KeyMap, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The shape of each mapped parameter."""
    out = {}
    for name, parts in key_map.pieces.items():
        whole = shapes[parts[0].key]
        if len(parts) == 1 and parts[0].start == 0 and parts[0].stop == _rows(whole):
            out[name] = tuple(whole)
        else:
            out[name] = (sum(p.stop - p.start for p in parts), *whole[1:])
    return out
