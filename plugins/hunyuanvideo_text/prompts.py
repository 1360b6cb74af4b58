"""Prompt checks and tokenisation shared by the encoder halves (no framework imports)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError
from transformers import PreTrainedTokenizerBase

from plugins.hunyuanvideo_text.config import PromptTemplate

Template = TypeVar("Template", bound=BaseModel)


def prompt_list(prompts: object) -> list[str]:
    """A prompt or a non-empty sequence of prompts, as a list; anything else is a ``ValueError``."""
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, Sequence) and not isinstance(prompts, bytes):
        items = list(prompts)
        if not items:
            raise ValueError("prompts: expected a string or a non-empty list of strings, got an empty list")
        wrong = [f"{i}: {type(p).__name__}" for i, p in enumerate(items) if not isinstance(p, str)]
        if wrong:
            raise ValueError(f"prompts: expected strings, got non-strings at {', '.join(wrong)}")
        return items
    raise ValueError(f"prompts: expected a string or a list of strings, got {type(prompts).__name__}")


def as_template(value: Any, kind: type[Template] = PromptTemplate) -> Template:
    """A per-call template: a ``kind`` (``PromptTemplate`` or another template model), diffusers'
    dict of its fields, or a bare template string."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        value = {"template": value}
    if not isinstance(value, dict) or "template" not in value:
        optional = ", ".join(repr(name) for name in kind.model_fields if name != "template")
        raise ValueError(f"prompt_template: expected a dict with a 'template' key (and optionally "
                         f"{optional}), got {value!r}")
    try:
        return kind.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'template'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"prompt_template: {problems}") from None


def crop_start(template: PromptTemplate, tokenizer: PreTrainedTokenizerBase) -> int:
    """The given ``crop_start``, or the template's token count less the ``{}`` and the closing
    token, as ``HunyuanVideoPipeline`` counts it."""
    if template.crop_start is not None:
        return template.crop_start
    return len(tokenizer(template.template)["input_ids"]) - 2


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, vocab_size: int,
             what: str) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` ``[B, max_length]``, padded and truncated as
    diffusers asks the tokenizer to, with a warning for each prompt truncated. Ids outside
    the model's ``vocab_size`` are refused."""
    encoded = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True,
                        return_attention_mask=True, return_tensors="np")
    ids = encoded["input_ids"]
    if ids.size and int(ids.max()) >= vocab_size:
        raise ValueError(f"{what}: the tokenizer produced id {int(ids.max())}, outside the model's "
                         f"vocabulary of {vocab_size}; do the tokenizer and the model belong together?")
    full = tokenizer(texts)["input_ids"]
    for index, untruncated in enumerate(full):
        if len(untruncated) > max_length:
            warnings.warn(f"{what}: prompt {index} is {len(untruncated)} tokens, longer than {max_length}; "
                          f"it is truncated to {max_length} tokens", stacklevel=3)
    return ids.astype(np.int32), encoded["attention_mask"].astype(bool)
