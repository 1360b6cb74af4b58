"""ComfyUI's "scaled fp8": fp8 weights each with a per-tensor float32 scale.

Such a file holds a ``scaled_fp8`` marker tensor, ``X.scale_weight`` beside each fp8
``X.weight`` (dequantised as ``weight.float() * scale_weight``), and may hold
``X.scale_input`` (for fp8 matmuls, which a float32 computation does not use). The
scales are tiny and read at once; the weights stay fp8 and are dequantised per layer.
"""

from __future__ import annotations

from pathlib import Path

from plugins.common.checkpoint import Checkpoint, CheckpointError, listed
from plugins.common.fp8 import FP8

MARKER = "scaled_fp8"
SCALE_WEIGHT = ".scale_weight"
SCALE_INPUT = ".scale_input"


def read_scales(checkpoint: Checkpoint, where: Path) -> tuple[dict[str, float], set[str]]:
    """Each scaled weight's scale, and the file's keys that are scales or markers, not weights.

    A file marked as scaled fp8 must have the scale of every fp8 weight: without it the
    values would be off by the missing factor, silently."""
    from plugins.common.precision import to_float32

    records = checkpoint.records
    auxiliary = {key for key in records if key == MARKER or key.endswith((SCALE_WEIGHT, SCALE_INPUT))}
    scales: dict[str, float] = {}
    for key in sorted(k for k in auxiliary if k.endswith(SCALE_WEIGHT)):
        values = to_float32(checkpoint.read_stored(key), records[key].dtype)
        if values.size != 1:
            raise CheckpointError(f"{where}: {key} holds {values.size} values; only per-tensor scales "
                                  f"(one value each) are supported")
        scales[key[: -len(SCALE_WEIGHT)] + ".weight"] = float(values.reshape(-1)[0])
    orphans = sorted(name for name in scales if name not in records)
    if orphans:
        raise CheckpointError(f"{where}: scales without their weights: {listed(orphans)}")
    if MARKER in records:
        unscaled = sorted(key for key, record in records.items()
                          if record.dtype in FP8 and key not in auxiliary and key not in scales)
        if unscaled:
            raise CheckpointError(f"{where}: a scaled fp8 file (it has the {MARKER!r} marker) without the "
                                  f"scale_weight of {len(unscaled)} fp8 weight(s): {listed(unscaled)}; the "
                                  f"file is incomplete, download it again")
    return scales, auxiliary

