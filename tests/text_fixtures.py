"""Tiny text encoders for tests: tokenizers built locally, random PyTorch reference models,
and pipeline folders in diffusers' layout (``text_encoder/``, ``text_encoder_2/``,
``tokenizer/``, ``tokenizer_2/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    LlamaConfig,
    LlamaModel,
    PreTrainedTokenizerFast,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

LLAMA_SPECIALS = ["<unk>", "<pad>", "<|begin_of_text|>", "<|end_of_text|>",
                  "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
WORDS = ("a the cat dog bird walks runs flies on in over grass snow city street at night "
         "red blue slowly camera pans left video describe system user").split()
PUNCTUATION = [":", ".", ","]

# To the tiny tokenizer the prompt follows 14 tokens (<|begin_of_text|> and 13 words and
# markers), so its crop_start is 14.
TEMPLATE = {
    "template": "<|start_header_id|>system<|end_header_id|>\n\ndescribe the video: camera ."
                "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>",
    "crop_start": 14,
}

CLIP_MERGES = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("t", "h"), ("th", "e</w>"),
               ("g", "r"), ("gr", "a"), ("s", "s</w>"), ("gra", "ss</w>"), ("o", "n</w>")]


def llama_tokenizer(padding_side: str = "right") -> PreTrainedTokenizerFast:
    """A word-level tokenizer with LLaMA-3's header tokens; unknown words become ``<unk>``."""
    vocab = {token: i for i, token in enumerate([*LLAMA_SPECIALS, *WORDS, *PUNCTUATION])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    bos = "<|begin_of_text|>"
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=bos, eos_token="<|end_of_text|>", pad_token="<pad>",
        unk_token="<unk>", additional_special_tokens=LLAMA_SPECIALS[4:], padding_side=padding_side)


def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE over every byte, with a few merges; end-of-text is the highest id."""
    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in CLIP_MERGES),
              "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=CLIP_MERGES)


def llama_config(**fields: Any) -> LlamaConfig:
    """A tiny LLaMA; ``fields`` override (layers, heads, widths)."""
    defaults = dict(vocab_size=len(LLAMA_SPECIALS) + len(WORDS) + len(PUNCTUATION), hidden_size=16,
                    intermediate_size=24, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=512, pad_token_id=1, bos_token_id=2, eos_token_id=3)
    return LlamaConfig(**{**defaults, **fields})


def clip_config(**fields: Any) -> CLIPTextConfig:
    """A tiny CLIP text model with 77 positions; ``fields`` override."""
    tokenizer_size = 2 * 256 + len(CLIP_MERGES) + 2
    defaults = dict(vocab_size=tokenizer_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer_size - 2,
                    eos_token_id=tokenizer_size - 1, pad_token_id=tokenizer_size - 1)
    return CLIPTextConfig(**{**defaults, **fields})


def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (norm weights around one), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1 + 0.2 * noise if "norm" in name and name.endswith("weight") else 0.3 * noise)
    return model.eval()


def reference_models(llama: LlamaConfig, clip: CLIPTextConfig, seed: int) -> tuple[LlamaModel, CLIPTextModel]:
    return randomized(LlamaModel(llama), seed), randomized(CLIPTextModel(clip), seed + 1)


def save_pipeline(folder: Path, llama: LlamaModel, clip: CLIPTextModel, tokenizer, tokenizer_2,
                  sharded: bool = False) -> Path:
    """A pipeline folder holding the two text encoders and their tokenizers."""
    shard = {"max_shard_size": "20KB"} if sharded else {}
    llama.save_pretrained(folder / "text_encoder", **shard)
    clip.save_pretrained(folder / "text_encoder_2", **shard)
    tokenizer.save_pretrained(folder / "tokenizer")
    tokenizer_2.save_pretrained(folder / "tokenizer_2")
    return folder


def reference_pipeline(llama: LlamaModel, clip: CLIPTextModel, tokenizer, tokenizer_2):
    """diffusers' ``HunyuanVideoPipeline`` holding only its text encoders."""
    from diffusers import HunyuanVideoPipeline

    return HunyuanVideoPipeline(text_encoder=llama, tokenizer=tokenizer, transformer=None, vae=None,
                                scheduler=None, text_encoder_2=clip, tokenizer_2=tokenizer_2)


def words(unknown: bool = True) -> st.SearchStrategy[str]:
    """A word of the tiny vocabularies or, with ``unknown``, any short text."""
    known = st.sampled_from(WORDS + PUNCTUATION)
    return st.one_of(known, st.text(min_size=1, max_size=6)) if unknown else known


def prompts(max_words: int = 12) -> st.SearchStrategy[str]:
    """A prompt of up to ``max_words`` words, the empty prompt included."""
    return st.lists(words(), max_size=max_words).map(" ".join)
