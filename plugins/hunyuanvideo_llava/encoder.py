"""The LLaVA encoder: ``HunyuanVideoImageToVideoPipeline._get_llama_prompt_embeds`` in MindSpore."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mindspore.nn.utils import no_init_parameters
from transformers import CLIPImageProcessor, LlavaConfig, PreTrainedTokenizerBase

from contracts import TextEmbeddings, check_images
from plugins.common.checkpoint import CheckpointError
from plugins.common.runtime import apply_matmul_precision, compute_dtype, dispatch_synchronously_on_cpu
from plugins.common.weights import load_weights
from plugins.hunyuanvideo_llava.config import ImagePromptTemplate, LlavaEncoderConfig
from plugins.hunyuanvideo_llava.model import LlavaModel
from plugins.hunyuanvideo_llava.tokens import expand_image_tokens, select
from plugins.hunyuanvideo_text.layers import randomize
from plugins.hunyuanvideo_text.llama_encoder import attention_mask
from plugins.hunyuanvideo_text.loading import resolve
from plugins.hunyuanvideo_text.prompts import as_template, prompt_list, tokenize

NAME = "hunyuanvideo-llava"
END_HEADER = "<|end_header_id|>"
TEMPLATE_TAIL = 5  # tokens of a template after its prompt, with the '{}', that diffusers' crop_start leaves out


def image_batch(images: object, count: int) -> np.ndarray:
    """The images for ``count`` prompts, checked: one per prompt, or one for all."""
    if images is None:
        raise ValueError(f"{NAME}: this encoder needs an image: encode(prompts, images=...) with 8-bit RGB "
                         f"images [B, H, W, 3] (uint8), one per prompt or one for all")
    images = check_images(images)
    if len(images) not in (1, count):
        raise ValueError(f"{NAME}: got {len(images)} images for {count} prompts; give one image per prompt "
                         f"or one for all")
    return images


class LlavaTextEncoder:
    """Prompts and images to the hidden states and mask HunyuanVideo-I2V's backbone reads: the
    image's features (every ``image_embed_interleave``-th) followed by the prompt's tokens,
    exactly as diffusers computes them; ``pooled`` is None."""

    def __init__(self, config: LlavaEncoderConfig, tokenizer: PreTrainedTokenizerBase, model_config: LlavaConfig,
                 image_processor: CLIPImageProcessor, model_folder: Path | None = None) -> None:
        dispatch_synchronously_on_cpu()
        self.config, self.tokenizer, self.model_config = config, tokenizer, model_config
        self.image_processor = image_processor
        text = model_config.text_config
        self.index = text.num_hidden_layers - config.num_hidden_layers_to_skip
        if self.index < 0:
            raise ValueError(f"{NAME}: num_hidden_layers_to_skip={config.num_hidden_layers_to_skip} needs at "
                             f"least that many layers, the language model has {text.num_hidden_layers}")
        self.end_header = tokenizer.convert_tokens_to_ids(END_HEADER)
        if self.end_header is None or self.end_header == tokenizer.unk_token_id:
            raise ValueError(f"{NAME}: the tokenizer has no {END_HEADER} token, which marks the assistant "
                             f"header the encoding is cropped at")
        image_token = model_config.image_token_index
        if image_token not in tokenizer.added_tokens_decoder:
            raise ValueError(f"{NAME}: the tokenizer has no image token: the model's image_token_index {image_token} "
                             f"is {tokenizer.convert_ids_to_tokens(image_token)!r} to it, not an added token like "
                             f"'<image>'; use the tokenizer saved with the model")
        compute = compute_dtype(config.compute_dtype)
        if model_folder is None:
            self.model = LlavaModel(model_config, compute)
            randomize(self.model, config.seed, text.initializer_range)
        else:  # no random initial values: the checkpoint replaces them all
            with no_init_parameters():
                self.model = LlavaModel(model_config, compute)
            load_weights(self.model, model_folder, "LLaVA text encoder", config.weight_dtype, config.stream_weights)
        apply_matmul_precision(config.compute_dtype, self.model, NAME)

    def crop_start(self, template: ImagePromptTemplate) -> int:
        if template.crop_start is not None:
            return template.crop_start
        return len(self.tokenizer(template.template)["input_ids"]) - TEMPLATE_TAIL

    def pixel_values(self, images: np.ndarray) -> np.ndarray:
        """The images resized, cropped and normalised by the checkpoint's ``CLIPImageProcessor``
        (told the channels are last: it guesses otherwise, and a 3-pixel-high image would fool it)."""
        processed = self.image_processor(list(images), return_tensors="np", input_data_format="channels_last")
        return np.asarray(processed["pixel_values"], np.float32)

    def encode(self, prompts: Sequence[str] | str, images: np.ndarray | None = None,
               prompt_template: dict[str, Any] | str | None = None, max_sequence_length: int | None = None,
               image_embed_interleave: int | None = None) -> TextEmbeddings:
        """``images``: 8-bit RGB ``[B, H, W, 3]``, one per prompt or one for all. The other
        arguments override the config for this call."""
        prompts = prompt_list(prompts)
        images = image_batch(images, len(prompts))
        config = self.config
        template = (config.prompt_template if prompt_template is None
                    else as_template(prompt_template, ImagePromptTemplate))
        length = config.max_sequence_length if max_sequence_length is None else max_sequence_length
        if not isinstance(length, int) or length < 5:
            raise ValueError(f"max_sequence_length: expected an int of at least 5, got {length!r}")
        interleave = config.image_embed_interleave if image_embed_interleave is None else image_embed_interleave
        if not isinstance(interleave, int) or interleave < 0:
            raise ValueError(f"image_embed_interleave: expected an int of at least 0, got {interleave!r}")
        crop = self.crop_start(template)
        ids, mask = tokenize(self.tokenizer, [template.template.format(p) for p in prompts], length + crop,
                             self.model_config.text_config.vocab_size, NAME)
        expanded, model_mask, positions = expand_image_tokens(
            ids, template, self.model_config.image_token_index, getattr(self.model_config, "pad_token_id", None))
        features = self.model.image_features(self.pixel_values(images)).asnumpy()  # one image for all: once
        features = np.broadcast_to(features, (len(prompts), *features.shape[1:]))
        if features.shape[1] != template.image_emb_len:
            raise ValueError(f"{NAME}: the vision tower gives {features.shape[1]} features per image, the template's "
                             f"image_emb_len is {template.image_emb_len}; set image_emb_len={features.shape[1]}")
        # Attention is causal, so trailing padding (in every row) changes no real token: it is not
        # computed, and its hidden states are zeros (diffusers' are unused values there).
        used = int(np.flatnonzero(model_mask.any(0)).max(initial=0)) + 1
        hidden = self.model.hidden_state(expanded[:, :used], features, attention_mask(model_mask[:, :used]),
                                         positions[:, :used], self.index).asnumpy()
        hidden = np.pad(hidden, ((0, 0), (0, expanded.shape[1] - used), (0, 0)))
        hidden, kept = select(hidden, ids, mask, template, crop, self.end_header, interleave)
        return TextEmbeddings(hidden_states=hidden, attention_mask=kept)


def image_processor_of(config: LlavaEncoderConfig, weights: Path | None) -> CLIPImageProcessor:
    folder = config.image_processor
    if folder is None:
        if weights is None:
            raise ValueError(f"encoder {NAME!r} without weights needs the option 'image_processor' (a folder with "
                             f"preprocessor_config.json); or pass weights=<a pipeline folder>")
        folder = Path(weights) / config.image_processor_subfolder
    if not Path(folder).is_dir():
        raise CheckpointError(f"encoder {NAME!r} image processor: folder {folder} does not exist")
    return CLIPImageProcessor.from_pretrained(folder)


def build(config: LlavaEncoderConfig, weights: Path | None) -> LlavaTextEncoder:
    """The registered factory: tokenizer, image processor, architecture and weights from a pipeline folder."""
    tokenizer, model_config, folder = resolve(NAME, config, weights, LlavaConfig)
    return LlavaTextEncoder(config, tokenizer, model_config, image_processor_of(config, weights), folder)
