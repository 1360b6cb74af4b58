"""The composite: ``HunyuanVideoPipeline.encode_prompt`` from two encoders built by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts import Encoder, TextEmbeddings
from plugins.hunyuanvideo_text.config import TextEncoderConfig
from plugins.hunyuanvideo_text.prompts import prompt_list
from registry import default_registry


class HunyuanVideoTextEncoder:
    """``hidden_states`` and ``attention_mask`` from ``llm``, ``pooled`` from ``clip``.

    ``llm`` is any encoder; ``prompt_template``/``max_sequence_length`` of a call are
    passed to it only when given. ``clip`` is any encoder whose result has ``pooled``.
    """

    def __init__(self, config: TextEncoderConfig, llm: Encoder, clip: Encoder) -> None:
        self.config, self.llm, self.clip = config, llm, clip

    def encode(self, prompts: Sequence[str] | str, prompt_template: dict[str, Any] | str | None = None,
               max_sequence_length: int | None = None) -> TextEmbeddings:
        prompts = prompt_list(prompts)
        options = {key: value for key, value in [("prompt_template", prompt_template),
                                                 ("max_sequence_length", max_sequence_length)]
                   if value is not None}
        text = self.llm.encode(prompts, **options)
        pooled = self.clip.encode(prompts).pooled
        if pooled is None:
            raise ValueError(f"hunyuanvideo-text: the clip encoder {self.config.clip!r} returned no pooled "
                             f"embedding")
        return TextEmbeddings(hidden_states=text.hidden_states, attention_mask=text.attention_mask,
                              pooled=pooled)


def build(config: TextEncoderConfig, weights: Path | None) -> HunyuanVideoTextEncoder:
    """The registered factory: each half built by name from the same pipeline folder."""
    llm_options = dict(config.llm_options)
    if config.prompt_template is not None:
        llm_options["prompt_template"] = config.prompt_template.model_dump()
    if config.max_sequence_length is not None:
        llm_options["max_sequence_length"] = config.max_sequence_length
    registry = default_registry()
    llm = registry.get("encoder", config.llm).create(weights, {}, **llm_options)
    clip = registry.get("encoder", config.clip).create(weights, {}, **config.clip_options)
    return HunyuanVideoTextEncoder(config, llm, clip)
