"""The composite: ``HunyuanVideoImageToVideoPipeline.encode_prompt`` from two encoders built by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contracts import Encoder, TextEmbeddings
from plugins.hunyuanvideo_llava.config import I2VTextEncoderConfig
from plugins.hunyuanvideo_text.prompts import prompt_list
from registry import default_registry


class HunyuanVideoI2VTextEncoder:
    """``hidden_states`` and ``attention_mask`` of prompts and images from ``llm``, ``pooled``
    of the prompts from ``clip``. The per-call options go to ``llm`` only when given."""

    def __init__(self, config: I2VTextEncoderConfig, llm: Encoder, clip: Encoder) -> None:
        self.config, self.llm, self.clip = config, llm, clip

    def encode(self, prompts: Sequence[str] | str, images: np.ndarray | None = None,
               prompt_template: dict[str, Any] | str | None = None, max_sequence_length: int | None = None,
               image_embed_interleave: int | None = None) -> TextEmbeddings:
        prompts = prompt_list(prompts)
        options = {key: value for key, value in [("prompt_template", prompt_template),
                                                 ("max_sequence_length", max_sequence_length),
                                                 ("image_embed_interleave", image_embed_interleave)]
                   if value is not None}
        text = self.llm.encode(prompts, images=images, **options)
        pooled = self.clip.encode(prompts).pooled
        if pooled is None:
            raise ValueError(f"hunyuanvideo-i2v-text: the clip encoder {self.config.clip!r} returned no pooled "
                             f"embedding")
        return TextEmbeddings(hidden_states=text.hidden_states, attention_mask=text.attention_mask, pooled=pooled)


def build(config: I2VTextEncoderConfig, weights: Path | None) -> HunyuanVideoI2VTextEncoder:
    """The registered factory: each half built by name from the same pipeline folder."""
    llm_options = dict(config.llm_options)
    if config.prompt_template is not None:
        llm_options["prompt_template"] = config.prompt_template.model_dump()
    for key in ("max_sequence_length", "image_embed_interleave"):
        if getattr(config, key) is not None:
            llm_options[key] = getattr(config, key)
    registry = default_registry()
    llm = registry.get("encoder", config.llm).create(weights, {}, **llm_options)
    clip = registry.get("encoder", config.clip).create(weights, {}, **config.clip_options)
    return HunyuanVideoI2VTextEncoder(config, llm, clip)
