"""Options of HunyuanVideo-I2V's prompt+image encoders (pydantic only, importable without a framework).

Weights: a *pipeline* folder in diffusers' layout (``hunyuanvideo-community/HunyuanVideo-I2V``):
``text_encoder/`` holds transformers' ``LlavaForConditionalGeneration`` (``config.json``
read through ``LlavaConfig``), ``tokenizer/`` its tokenizer, ``image_processor/`` the
``CLIPImageProcessor`` that resizes, crops and normalises the image. The CLIP half of the
composite reads ``text_encoder_2/`` and ``tokenizer_2/`` as for text-to-video.

Without weights the LLaVA encoder is built with random parameters (seeded by ``seed``) and
needs ``tokenizer`` (a folder), ``text_config`` (``LlavaConfig`` keyword arguments, with
``text_config`` and ``vision_config`` as dicts) and ``image_processor`` (a folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts import ComponentConfig
from plugins.common.options import PrecisionConfig

I2V_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video by detailing the following "
    "aspects according to the reference image: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>\n\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


class ImagePromptTemplate(BaseModel):
    """A prompt template with an image, as ``HunyuanVideoImageToVideoPipeline`` takes it.

    ``template`` has one ``{}`` for the prompt and the image placeholder (``<image>``), a
    token the tokenizer maps to the model's ``image_token_index``. That token becomes the
    image's ``image_emb_len`` features, at positions ``image_emb_start:image_emb_end`` of
    the expanded sequence. ``crop_start``: how many leading tokens of the text are dropped
    (``None``: the template's tokens less five, as diffusers counts them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str
    crop_start: int | None = Field(None, ge=1)
    image_emb_start: int = Field(5, ge=0)
    image_emb_end: int = Field(581, ge=1)
    image_emb_len: int = Field(576, ge=1)

    @field_validator("template")
    @classmethod
    def _placeholder(cls, value: str) -> str:
        try:
            placeholder = value.format("") != value.format("x")
        except (IndexError, KeyError, ValueError):
            raise ValueError("a prompt template has one '{}' for the prompt; write other braces "
                             "doubled, '{{' and '}}'") from None
        if not placeholder:
            raise ValueError("a prompt template needs a '{}' where the prompt goes")
        return value

    @model_validator(mode="after")
    def _image_span(self) -> ImagePromptTemplate:
        if self.image_emb_end - self.image_emb_start != self.image_emb_len:
            raise ValueError(f"image_emb_end - image_emb_start must equal image_emb_len: "
                             f"{self.image_emb_end} - {self.image_emb_start} != {self.image_emb_len}")
        return self


I2V_PROMPT_TEMPLATE = ImagePromptTemplate(template=I2V_TEMPLATE, crop_start=103, image_emb_start=5,
                                          image_emb_end=581, image_emb_len=576)


def _template(value: Any) -> Any:
    """A bare string is a template whose ``crop_start`` is counted."""
    return {"template": value} if isinstance(value, str) else value


class LlavaEncoderConfig(PrecisionConfig):
    """HunyuanVideo-I2V's LLaVA encoder: hidden states of the layer ``num_hidden_layers_to_skip``
    before the last, of the templated prompt with the image's features in place of its image
    token; every ``image_embed_interleave``-th image feature (all when it is 0 or above 5, as
    diffusers has it) comes first, then the text tokens, cropped."""

    takes_images: ClassVar[bool] = True

    prompt_template: ImagePromptTemplate = I2V_PROMPT_TEMPLATE
    max_sequence_length: int = Field(256, ge=5)
    num_hidden_layers_to_skip: int = Field(2, ge=0)
    image_embed_interleave: int = Field(2, ge=0)
    subfolder: str = "text_encoder"
    tokenizer_subfolder: str = "tokenizer"
    image_processor_subfolder: str = "image_processor"
    tokenizer: Path | None = None  # a tokenizer folder, in place of the checkpoint's own
    image_processor: Path | None = None  # an image processor folder, in place of the checkpoint's own
    text_config: dict[str, Any] | None = None  # LlavaConfig fields of a random build (no weights)
    seed: int = 0  # of a random build
    weights_file: Path | None = None  # a single safetensors file in place of the subfolder's weights

    @field_validator("prompt_template", mode="before")
    @classmethod
    def _bare_template(cls, value: Any) -> Any:
        return _template(value)


class I2VTextEncoderConfig(ComponentConfig):
    """HunyuanVideo-I2V's text encoder: the LLaVA encoder's hidden states and mask of prompt and
    image with the CLIP encoder's pooled embedding of the prompt. Each half is a registered
    encoder built by name with ``llm_options``/``clip_options``; ``prompt_template``,
    ``max_sequence_length`` and ``image_embed_interleave``, when set, go to the LLaVA half."""

    takes_images: ClassVar[bool] = True

    llm: str = "hunyuanvideo-llava"
    clip: str = "hunyuanvideo-clip"
    llm_options: dict[str, Any] = {}
    clip_options: dict[str, Any] = {}
    prompt_template: ImagePromptTemplate | None = None
    max_sequence_length: int | None = Field(None, ge=5)
    image_embed_interleave: int | None = Field(None, ge=0)

    @field_validator("prompt_template", mode="before")
    @classmethod
    def _bare_template(cls, value: Any) -> Any:
        return _template(value)
