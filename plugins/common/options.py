"""Options every built-in model component shares (pydantic only, importable without a framework)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import ComponentConfig

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
ComputeDtype = Literal["auto", "float32", "bfloat16", "float16", "int8"]  # int8: the transformer's, on CPU


class PrecisionConfig(ComponentConfig):
    """How a model component holds and computes with its weights.

    ``weight_dtype`` is how parameters are held in memory: ``auto`` keeps the checkpoint's
    own dtype (bf16 stays bf16, half the memory of float32); a named dtype converts at
    load. ``compute_dtype`` is what each layer computes in: on CPU, bfloat16 means bf16
    matmuls with float32 sums through oneDNN where the CPU has bf16 instructions (float32
    elsewhere, with a notice), and ``auto`` picks it for weights held in bf16, float32
    otherwise; on a device with bf16 matmuls ``auto`` is bfloat16. Weights that the
    matmuls cannot read as stored are widened layer by layer, just before use. ``stream_weights`` maps
    the checkpoint instead of reading it and widens each layer straight from the file
    (the page cache keeps what fits): ``auto`` streams when the checkpoint is larger than
    the memory the machine has free.
    """

    weight_dtype: Dtype = Field("auto", description="held in memory as: auto = the checkpoint's dtype")
    compute_dtype: Dtype = Field("auto", description="computed in: auto = bfloat16 for bf16 weights where the CPU "
                                                     "has bf16 matmuls, else float32 on CPU; bfloat16 elsewhere")
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
