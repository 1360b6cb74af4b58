"""Tiny text encoders of HunyuanVideo-I2V, written offline as ``zoo.tiny`` writes text-to-video's.

``write_tiny_i2v_text_encoders(folder)`` writes, in diffusers' I2V layout, ``text_encoder/``
(a ``LlavaForConditionalGeneration``: CLIP vision tower, projector, LLaMA), ``tokenizer/`` (the
tiny byte-level LLaMA tokenizer with ``<image>`` and ``assistant`` whole), ``image_processor/``
(``CLIPImageProcessor``), ``text_encoder_2/`` and ``tokenizer_2/`` (CLIP's text model), with
weights drawn from fixed seeds. The published template's ``crop_start`` and image span are
counts of LLaMA-3's tokens, so a tiny pipeline passes ``prompt_template()`` to its encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, PreTrainedTokenizerFast

from zoo import tiny

IMAGE_SIZE, PATCH_SIZE = 16, 4
IMAGE_FEATURES = (IMAGE_SIZE // PATCH_SIZE) ** 2
TEMPLATE = ("<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video.<|eot_id|>\n\n"
            "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def llava_tokenizer() -> PreTrainedTokenizerFast:
    """``zoo.tiny``'s LLaMA tokenizer with LLaVA's ``<image>``, and ``assistant`` as one token, so
    the template's assistant header is four tokens, as LLaMA-3's tokenizer has it."""
    tokenizer = tiny.llama_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "assistant"]},
                                 replace_extra_special_tokens=False)
    return tokenizer


def prompt_template(tokenizer: PreTrainedTokenizerFast | None = None) -> dict[str, Any]:
    """``TEMPLATE`` with its token counts for the tiny tokenizer: the tokens before the prompt
    (``crop_start``) and where the image token is."""
    tokenizer = tokenizer or llava_tokenizer()
    before = tokenizer(TEMPLATE.split("{}")[0])["input_ids"]
    start = before.index(tokenizer.convert_tokens_to_ids("<image>"))
    return {"template": TEMPLATE, "crop_start": len(before), "image_emb_start": start,
            "image_emb_end": start + IMAGE_FEATURES, "image_emb_len": IMAGE_FEATURES}


def llava_config(tokenizer: PreTrainedTokenizerFast, hidden_size: int) -> LlavaConfig:
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                       num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
                              image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    return LlavaConfig(vision_config=vision, text_config=text, pad_token_id=tokenizer.pad_token_id,
                       image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=IMAGE_FEATURES)


def image_processor() -> CLIPImageProcessor:
    return CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                              resample=3, do_center_crop=True, do_normalize=True)


def write_tiny_i2v_text_encoders(folder: Path, text_embed_dim: int = tiny.TRANSFORMER["text_embed_dim"],
                                 pooled_projection_dim: int = tiny.TRANSFORMER["pooled_projection_dim"],
                                 seed: int = tiny.SEED) -> dict[str, Any]:
    """Write the I2V text encoders, tokenizers and image processor into ``folder`` (a pipeline
    folder; ``model_index.json`` is the caller's) for a backbone of ``text_embed_dim`` and
    ``pooled_projection_dim``; returns the prompt template to encode with."""
    from plugins.common.weights import save_weights
    from plugins.hunyuanvideo_llava.config import LlavaEncoderConfig
    from plugins.hunyuanvideo_llava.encoder import LlavaTextEncoder
    from plugins.hunyuanvideo_text.clip_encoder import ClipTextEncoder
    from plugins.hunyuanvideo_text.config import ClipEncoderConfig

    folder = Path(folder)
    tokenizer, tokenizer_2, processor = llava_tokenizer(), tiny.clip_tokenizer(), image_processor()
    llava = llava_config(tokenizer, text_embed_dim)
    clip = tiny.clip_config(tokenizer_2)
    clip.hidden_size = pooled_projection_dim
    llava_model = LlavaTextEncoder(LlavaEncoderConfig(seed=seed), tokenizer, llava, processor).model
    clip_model = ClipTextEncoder(ClipEncoderConfig(seed=seed + 1), tokenizer_2, clip).model
    save_weights(llava_model, folder / "text_encoder")
    save_weights(clip_model, folder / "text_encoder_2")
    llava.save_pretrained(folder / "text_encoder")
    clip.save_pretrained(folder / "text_encoder_2")
    tokenizer.save_pretrained(folder / "tokenizer")
    tokenizer_2.save_pretrained(folder / "tokenizer_2")
    processor.save_pretrained(folder / "image_processor")
    return prompt_template(tokenizer)
