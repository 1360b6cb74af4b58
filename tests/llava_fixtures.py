"""Tiny LLaVA encoders for tests: a word-level tokenizer with an image token, random PyTorch
reference models, an image processor, and pipeline folders in diffusers' I2V layout
(``text_encoder/``, ``tokenizer/``, ``image_processor/``, ``text_encoder_2/``, ``tokenizer_2/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessor,
    CLIPTextModel,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from tests.text_fixtures import PUNCTUATION, WORDS, randomized

SPECIALS = ["<unk>", "<pad>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>", "<image>"]
IMAGE_TOKEN = SPECIALS.index("<image>")
VOCAB = [*SPECIALS, *WORDS, "assistant", *PUNCTUATION]

# The I2V template's shape for the tiny tokenizer: <|begin_of_text|>, the system header (3 tokens),
# then the image token (4), eight more tokens and the user header (3) before the prompt (15).
TEMPLATE = "<|start_header_id|>system<|end_header_id|>\n\n<image>\ndescribe the video: camera .<|eot_id|>\n\n" \
           "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
CROP_START = 15
IMAGE_START = 4


def template(image_emb_len: int, crop_start: int | None = CROP_START) -> dict[str, Any]:
    return {"template": TEMPLATE, "crop_start": crop_start, "image_emb_start": IMAGE_START,
            "image_emb_end": IMAGE_START + image_emb_len, "image_emb_len": image_emb_len}


def tokenizer(padding_side: str = "right", image_token: bool = True) -> PreTrainedTokenizerFast:
    """Word-level, with LLaMA-3's header tokens and LLaVA's ``<image>`` (left out on request, so
    the placeholder becomes ``<unk>``)."""
    words = VOCAB if image_token else [t for t in VOCAB if t != "<image>"]
    vocab = {token: i for i, token in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    bos = "<|begin_of_text|>"
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    specials = [t for t in SPECIALS[4:] if t in vocab]
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token="<|end_of_text|>",
                                   pad_token="<pad>", unk_token="<unk>", additional_special_tokens=specials,
                                   padding_side=padding_side)


def llava_config(text: dict[str, Any] | None = None, vision: dict[str, Any] | None = None,
                 **fields: Any) -> LlavaConfig:
    """A tiny LLaVA: a LLaMA over ``VOCAB`` and a CLIP vision tower on 8x8 images of 4x4 patches."""
    text_fields = dict(vocab_size=len(VOCAB), hidden_size=16, intermediate_size=24, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       pad_token_id=1, bos_token_id=2, eos_token_id=3)
    vision_fields = dict(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                         image_size=8, patch_size=4)
    defaults = dict(image_token_index=IMAGE_TOKEN, pad_token_id=1)
    return LlavaConfig(vision_config=CLIPVisionConfig(**{**vision_fields, **(vision or {})}),
                       text_config=LlamaConfig(**{**text_fields, **(text or {})}),
                       **{**defaults, **fields})


def image_processor(size: int) -> CLIPImageProcessor:
    """CLIP's preprocessing at ``size``: shortest edge resized (bicubic), centre crop, normalised."""
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                              resample=3, do_center_crop=True, do_normalize=True)


def reference_llava(config: LlavaConfig, seed: int) -> LlavaForConditionalGeneration:
    return randomized(LlavaForConditionalGeneration(config), seed)


def reference_pipeline(llava, tok, processor, clip: CLIPTextModel | None = None, tokenizer_2=None):
    """diffusers' ``HunyuanVideoImageToVideoPipeline`` holding only its encoders."""
    from diffusers import HunyuanVideoImageToVideoPipeline

    return HunyuanVideoImageToVideoPipeline(text_encoder=llava, tokenizer=tok, transformer=None, vae=None,
                                            scheduler=None, text_encoder_2=clip, tokenizer_2=tokenizer_2,
                                            image_processor=processor)


def save_pipeline(folder: Path, llava, tok, processor, clip: CLIPTextModel | None = None,
                  tokenizer_2=None) -> Path:
    """A pipeline folder holding the encoders, their tokenizers and the image processor."""
    llava.save_pretrained(folder / "text_encoder")
    tok.save_pretrained(folder / "tokenizer")
    processor.save_pretrained(folder / "image_processor")
    if clip is not None:
        clip.save_pretrained(folder / "text_encoder_2")
        tokenizer_2.save_pretrained(folder / "tokenizer_2")
    return folder


def expected_features(config: LlavaConfig) -> int:
    """Image features per image: one per patch, plus the class token for the ``full`` strategy."""
    vision = config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    return patches + (config.vision_feature_select_strategy == "full")
