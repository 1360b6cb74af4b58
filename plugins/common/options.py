"""Options every built-in model component shares (pydantic only, importable without a framework)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import ComponentConfig

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class PrecisionConfig(ComponentConfig):
    """How a model component holds and computes with its weights.

    ``weight_dtype`` is how parameters are held in memory: ``auto`` keeps the checkpoint's
    own dtype (bf16 stays bf16, half the memory of float32); a named dtype converts at
    load. ``compute_dtype`` is what each layer computes in: ``auto`` is float32 on CPU
    (MindSpore's CPU backend has no bf16 matmul) and bfloat16 on a device that has one;
    weights are widened to it layer by layer, just before use. ``stream_weights`` maps
    the checkpoint instead of reading it and widens each layer straight from the file
    (the page cache keeps what fits): ``auto`` streams when the checkpoint is larger than
    the memory the machine has free.
    """

    weight_dtype: Dtype = Field("auto", description="held in memory as: auto = the checkpoint's dtype")
    compute_dtype: Dtype = Field("auto", description="computed in: auto = float32 on CPU, bfloat16 elsewhere")
    stream_weights: Literal["auto", "on", "off"] = Field(
        "auto", description="run from the memory-mapped checkpoint: auto = when it exceeds free memory")


class LoraSpec(BaseModel):
    """One LoRA adapter: a safetensors file (diffusers/PEFT, original-layout or kohya/musubi keys),
    its strength, and a name to change or remove it by (the file's stem unless given)."""

    model_config = ConfigDict(extra="forbid")

    path: Path
    strength: float = 1.0
    name: str | None = None


class AdapterConfig(ComponentConfig):
    """A model that takes LoRA adapters, applied on the fly at their strengths (see ``lora``)."""

    loras: list[LoraSpec] = Field([], description="LoRA adapters: [{path, strength, name}], applied on the fly")


PRECISION_OPTIONS = tuple(PrecisionConfig.model_fields)
OWN_OPTIONS = (*PRECISION_OPTIONS, *AdapterConfig.model_fields)  # ours, not a checkpoint's config.json keys
