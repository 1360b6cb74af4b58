"""Options of the text encoders (pydantic only, importable without a framework).

Weights: each encoder takes a *pipeline* folder (diffusers' layout), the same one
for both halves and the composite. The LLaMA half reads ``text_encoder/`` (its
``config.json`` through transformers' ``LlamaConfig``, its safetensors through
the shared loader) and ``tokenizer/`` (through ``AutoTokenizer``); the CLIP half
reads ``text_encoder_2/`` (``CLIPTextConfig``) and ``tokenizer_2/``.

Without weights an encoder is built with random parameters (seeded by ``seed``).
It still needs a tokenizer and an architecture: give ``tokenizer`` (a folder
``AutoTokenizer`` reads) and ``text_config`` (keyword arguments of ``LlamaConfig``
or ``CLIPTextConfig``), else the build stops with an error that says so. Code
that holds tokenizer and config objects in memory builds an encoder directly:
``LlamaTextEncoder(config, tokenizer, LlamaConfig(...))``,
``ClipTextEncoder(config, tokenizer, CLIPTextConfig(...))`` and
``HunyuanVideoTextEncoder(config, llm, clip)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts import ComponentConfig
from plugins.common.options import PrecisionConfig

DEFAULT_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
DEFAULT_CROP_START = 95  # the tokens of DEFAULT_TEMPLATE before the prompt, with LLaMA-3's tokenizer

class PromptTemplate(BaseModel):
    """A prompt template as diffusers takes it: ``template`` with one ``{}`` for the
    prompt, and ``crop_start``, how many leading tokens to drop from the encoding.

    ``crop_start=None`` counts the template's tokens, less two (the ``{}`` and the
    closing ``<|eot_id|>``), as ``HunyuanVideoPipeline`` does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str
    crop_start: int | None = Field(None, ge=0)

    @field_validator("template")
    @classmethod
    def _placeholder(cls, value: str) -> str:
        if "{}" not in value:
            raise ValueError("a prompt template needs a '{}' where the prompt goes")
        try:
            value.format("")
        except (IndexError, KeyError, ValueError):
            raise ValueError("a prompt template has one '{}' for the prompt; write other braces "
                             "doubled, '{{' and '}}'") from None
        return value


DEFAULT_PROMPT_TEMPLATE = PromptTemplate(template=DEFAULT_TEMPLATE, crop_start=DEFAULT_CROP_START)


def _template(value: Any) -> Any:
    """A bare string is a template whose ``crop_start`` is counted."""
    return {"template": value} if isinstance(value, str) else value


class _HalfConfig(PrecisionConfig):
    tokenizer: Path | None = None  # a tokenizer folder, in place of the checkpoint's own
    text_config: dict[str, Any] | None = None  # architecture of a random build (no weights)
    seed: int = 0  # of a random build
    weights_file: Path | None = None  # a single safetensors file in place of the subfolder's weights


class LlamaEncoderConfig(_HalfConfig):
    """HunyuanVideo's LLaMA half: hidden states of the layer ``num_hidden_layers_to_skip``
    before the last (the third-to-last hidden state) of the templated prompt, cropped.
    The published 8B model is stored in float16 (16 GB), which ``weight_dtype=auto`` keeps.
    """

    prompt_template: PromptTemplate = DEFAULT_PROMPT_TEMPLATE
    max_sequence_length: int = Field(256, ge=1)
    num_hidden_layers_to_skip: int = Field(2, ge=0)
    subfolder: str = "text_encoder"
    tokenizer_subfolder: str = "tokenizer"

    @field_validator("prompt_template", mode="before")
    @classmethod
    def _bare_template(cls, value: Any) -> Any:
        return _template(value)


class ClipEncoderConfig(_HalfConfig):
    """HunyuanVideo's CLIP half: the pooled output (at the end-of-text token) of
    ``max_sequence_length`` tokens, with the final hidden states and the token mask."""

    max_sequence_length: int = Field(77, ge=1)
    subfolder: str = "text_encoder_2"
    tokenizer_subfolder: str = "tokenizer_2"


class TextEncoderConfig(ComponentConfig):
    """HunyuanVideo's text encoder: the LLaMA half's hidden states and mask with the
    CLIP half's pooled embedding. Each half is a registered encoder, built by name
    with ``llm_options``/``clip_options``; ``prompt_template`` and
    ``max_sequence_length``, when set, are passed on to the LLaMA half."""

    llm: str = "hunyuanvideo-llama"
    clip: str = "hunyuanvideo-clip"
    llm_options: dict[str, Any] = {}
    clip_options: dict[str, Any] = {}
    prompt_template: PromptTemplate | None = None
    max_sequence_length: int | None = Field(None, ge=1)

    @field_validator("prompt_template", mode="before")
    @classmethod
    def _bare_template(cls, value: Any) -> Any:
        return _template(value)
