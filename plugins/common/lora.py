"""LoRA adapters on a loaded model: diffusers/PEFT, original-layout and kohya/musubi-tuner files.

An adapter adds ``strength * alpha / rank * up @ down`` to a weight. Applied on the fly, the
stored weights never change: ``precision.computable`` adds each adapter of a parameter to
its widened copy just before the layer runs, so adapters stack, their strengths change
between calls at no cost, and removing one is exact. Merged, the sums are computed once and
held instead of the weights (the originals kept aside, so unmerging is exact too), which
saves the per-call ``up @ down`` at the cost of the merged layers' memory.

Module names are read in three spellings: diffusers' (``transformer.<module>.lora_A``), the
original layout's (``diffusion_model.double_blocks.0.img_attn_qkv.lora_up``, mapped by the
same rules as single files, fused ``qkv`` included: the ``up`` rows split between ``to_q``,
``to_k`` and ``to_v``, the ``down`` shared) and kohya's flattened one
(``lora_unet_double_blocks_0_img_attn_qkv.lora_down`` with ``.alpha``). A key that names no
module of the model, an adapter whose shapes do not fit, or one whose rank differs between
``up`` and ``down`` is refused, listing the keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mindspore import nn

from plugins.common.checkpoint import Checkpoint, CheckpointError, listed
from plugins.common.keymaps import TRANSFORMER_ORIGINAL, Layout, split
from plugins.common.precision import NAMES, Stored, narrow, store, stored_of, to_float32

PREFIXES = ("lora_unet_", "base_model.model.", "transformer.", "diffusion_model.", "model.diffusion_model.")
DOWN = (".lora_A.weight", ".lora_down.weight")
UP = (".lora_B.weight", ".lora_up.weight")
ALPHA = ".alpha"


@dataclass
class Adapter:
    """One adapter's update of one parameter: ``scale * up @ down``, reshaped to the weight."""

    name: str
    up: np.ndarray  # float32 [out, rank]
    down: np.ndarray  # float32 [rank, in]
    alpha_over_rank: float
    strength: float

    def add_to(self, values: np.ndarray) -> None:
        delta = self.up @ self.down
        delta *= np.float32(self.strength * self.alpha_over_rank)
        values += delta.reshape(values.shape)


@dataclass(frozen=True)
class ModuleUpdate:
    """A LoRA file's ``up``, ``down`` and ``alpha`` for one module, under the key it came from."""

    key: str
    up: np.ndarray
    down: np.ndarray
    alpha: float | None


def _float32(checkpoint: Checkpoint, key: str) -> np.ndarray:
    return to_float32(checkpoint.read_stored(key), checkpoint.records[key].dtype)


def read_lora(path: str | Path) -> dict[str, ModuleUpdate]:
    """The modules of a LoRA file (its own spelling of their names, prefix removed)."""
    checkpoint = Checkpoint(path)
    if not any(key.endswith(DOWN + UP) for key in checkpoint.records):
        raise CheckpointError(f"{path}: not a LoRA file (no lora_A/lora_B or lora_down/lora_up weights)")
    parts: dict[str, dict[str, str]] = {}
    unknown = []
    for key in checkpoint.records:
        bare = key
        for prefix in PREFIXES:
            if bare.startswith(prefix):
                bare = bare[len(prefix):]
                break
        for role, suffixes in (("down", DOWN), ("up", UP), ("alpha", (ALPHA,))):
            suffix = next((s for s in suffixes if bare.endswith(s)), None)
            if suffix:
                parts.setdefault(bare[: -len(suffix)], {})[role] = key
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{path}: keys that are not LoRA weights: {listed(sorted(unknown))}")
    modules = {}
    for module, roles in parts.items():
        if "up" not in roles or "down" not in roles:
            raise CheckpointError(f"{path}: {module} has {' and '.join(sorted(roles))} but not "
                                  f"{'up' if 'up' not in roles else 'down'}; the file is incomplete")
        up, down = _float32(checkpoint, roles["up"]), _float32(checkpoint, roles["down"])
        up, down = up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)
        if up.shape[1] != down.shape[0]:
            raise CheckpointError(f"{path}: {module}: the rank differs between up ({up.shape[1]}) and down "
                                  f"({down.shape[0]})")
        alpha = float(_float32(checkpoint, roles["alpha"]).reshape(-1)[0]) if "alpha" in roles else None
        modules[module] = ModuleUpdate(roles["up"], up, down, alpha)
    return modules


def _flat(name: str) -> str:
    return name.replace(".", "_")


class ModuleNames:
    """A model's weight-bearing modules, and how a LoRA file's module names find them."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], layout: Layout = TRANSFORMER_ORIGINAL) -> None:
        self.shapes = shapes
        self.layout = layout
        self.modules = {name[: -len(".weight")] for name in shapes if name.endswith(".weight")}
        self.flat = {_flat(module): module for module in self.modules}
        self.flat_rules = [(re.compile(rule.source.replace(r"\.", "_")), rule) for rule in layout.rules]

    def targets(self, module: str) -> tuple[tuple[str, ...], bool] | None:
        """The model modules a file's module updates (several for a fused one), and whether its
        halves swap; None if it names none."""
        if module in self.modules:
            return (module,), False
        if module in self.flat:
            return (self.flat[module],), False
        targets, swap = self.layout.targets(module)
        if all(target in self.modules for target in targets) and targets != (module,):
            return targets, swap
        for pattern, rule in self.flat_rules:
            match = pattern.fullmatch(module)
            if match:
                return tuple(t.format(*match.groups()) for t in rule.targets), rule.swap
        return None


def adapters_of(path: str | Path, shapes: dict[str, tuple[int, ...]], name: str,
                strength: float) -> dict[str, Adapter]:
    """Each updated parameter's adapter from the LoRA file ``path``, checked against the model's
    parameter ``shapes``; every module of the file must fit one of the model."""
    names = ModuleNames(shapes)
    adapters: dict[str, Adapter] = {}
    unmatched, misfit = [], []
    for module, update in read_lora(path).items():
        found = names.targets(module)
        if found is None:
            unmatched.append(update.key)
            continue
        targets, swap = found
        weights = tuple(f"{target}.weight" for target in targets)
        rows_of = {weight: shapes[weight][0] for weight in weights}
        pieces = split(update.key, update.up.shape[0], weights, swap, rows_of)
        rank = update.down.shape[0]
        scale = 1.0 if update.alpha is None else update.alpha / rank
        for weight, parts in pieces.items():
            shape = shapes[weight]
            up = np.concatenate([update.up[p.start:p.stop] for p in parts]) if len(parts) > 1 else \
                update.up[parts[0].start:parts[0].stop]
            if up.shape[0] != shape[0] or update.down.shape[1] != int(np.prod(shape[1:])):
                misfit.append(f"{update.key} ({update.up.shape[0]}x{rank} @ {rank}x{update.down.shape[1]}) "
                              f"for {weight} {tuple(shape)}")
                continue
            adapters[weight] = Adapter(name, np.ascontiguousarray(up), update.down, scale, strength)
    if unmatched:
        raise CheckpointError(f"{path}: a LoRA for another model? {len(unmatched)} key(s) name no module of "
                              f"this one: {listed(sorted(unmatched))}")
    if misfit:
        raise CheckpointError(f"{path}: a LoRA for another model? shapes do not fit: {listed(sorted(misfit))}")
    return adapters


class Adapters:
    """The LoRA adapters of one network, by name: loaded, re-weighted, removed, merged."""

    def __init__(self, network: nn.Cell) -> None:
        self.params = dict(network.parameters_and_names())
        self.shapes = {name: tuple(param.shape) for name, param in self.params.items()}
        self.strengths: dict[str, float] = {}
        self.merged = False

    def load(self, path: str | Path, strength: float = 1.0, name: str | None = None) -> str:
        """Add the adapter in ``path`` at ``strength``; its name (the file's stem unless given)."""
        name = name or Path(path).stem
        if name in self.strengths:
            raise ValueError(f"a LoRA adapter named {name!r} is already loaded; give another name")
        if self.merged:
            raise ValueError("LoRA adapters are merged; unmerge them before loading another")
        for weight, adapter in adapters_of(path, self.shapes, name, strength).items():
            param = self.params[weight]
            param.adapters = [*getattr(param, "adapters", []), adapter]
        self.strengths[name] = strength
        return name

    def _each(self, name: str | None = None):
        for param in self.params.values():
            for adapter in getattr(param, "adapters", []):
                if name is None or adapter.name == name:
                    yield param, adapter

    def set_strength(self, name: str, strength: float) -> None:
        self._known(name)
        if self.merged:
            raise ValueError("LoRA adapters are merged; unmerge them to change a strength")
        for _, adapter in self._each(name):
            adapter.strength = strength
        self.strengths[name] = strength

    def remove(self, name: str) -> None:
        self._known(name)
        if self.merged:
            raise ValueError("LoRA adapters are merged; unmerge them before removing one")
        for param in self.params.values():
            if getattr(param, "adapters", None):
                param.adapters = [a for a in param.adapters if a.name != name]
        del self.strengths[name]

    def _known(self, name: str) -> None:
        if name not in self.strengths:
            raise ValueError(f"no LoRA adapter named {name!r}; loaded: {', '.join(self.strengths) or 'none'}")

    def merge(self) -> None:
        """Hold each adapted weight with its adapters added (float32 weights stay float32, others
        become bf16, which fp8 cannot hold the sum in), the original kept for ``unmerge``."""
        if self.merged:
            return
        for param in self.params.values():
            adapters = getattr(param, "adapters", None)
            if not adapters:
                continue
            stored = stored_of(param) or Stored(param.float().asnumpy(), "F32")
            values = to_float32(stored.array, stored.dtype, scale=stored.scale)
            for adapter in adapters:
                adapter.add_to(values)
            dtype = "F32" if stored.dtype == "F32" else NAMES["bfloat16"]
            param.unmerged = (stored, adapters)
            param.adapters = []
            store(param, Stored(narrow(values, dtype), dtype))
        self.merged = True

    def unmerge(self) -> None:
        """Back to the original weights, the adapters applied on the fly again."""
        if not self.merged:
            return
        for param in self.params.values():
            unmerged = getattr(param, "unmerged", None)
            if unmerged is not None:
                store(param, unmerged[0])
                param.adapters, param.unmerged = unmerged[1], None
        self.merged = False
