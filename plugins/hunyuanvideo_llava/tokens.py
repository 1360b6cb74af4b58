"""Where the image's features go in the token sequence, and which hidden states are kept:
``HunyuanVideoImageToVideoPipeline._get_llama_prompt_embeds`` around the model call, in numpy."""

from __future__ import annotations

import numpy as np

from plugins.hunyuanvideo_llava.config import ImagePromptTemplate

ASSISTANT_TAIL = 4  # <|eot_id|> <|start_header_id|> assistant <|end_header_id|>: dropped by the crop


def expand_image_tokens(ids: np.ndarray, template: ImagePromptTemplate, image_token: int,
                        pad_token: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The token ids ``[B, L + image_emb_len - 1]`` with the one image token of each row widened
    to ``image_emb_len`` image tokens, the model's attention mask (every id but the model's
    ``pad_token_id``) and position ids (counting unmasked tokens; 1 where masked), as diffusers
    builds them. Each row must hold exactly one image token, at ``image_emb_start``."""
    counts = (ids == image_token).sum(1)
    if np.any(counts != 1):
        row = int(np.flatnonzero(counts != 1)[0])
        raise ValueError(f"hunyuanvideo-llava: prompt {row} has {int(counts[row])} image tokens (id {image_token}) "
                         f"after templating; the template needs exactly one image placeholder, which the "
                         f"tokenizer must turn into the model's image_token_index, and the prompt none")
    start, span = template.image_emb_start, template.image_emb_len
    found = (ids == image_token).argmax(1)
    if np.any(found != start):
        place = int(found[found != start][0])
        raise ValueError(f"hunyuanvideo-llava: the template's image token is token {place}, but its "
                         f"image_emb_start is {start}; set image_emb_start={place}, "
                         f"image_emb_end={place + span}")
    expanded = np.concatenate([ids[:, :start], np.full((len(ids), span), image_token, ids.dtype),
                               ids[:, start + 1:]], axis=1)
    mask = expanded != pad_token if pad_token is not None else np.ones(expanded.shape, bool)
    positions = np.where(mask, np.cumsum(mask, axis=1) - 1, 1)
    return expanded, mask, positions


def assistant_start(ids: np.ndarray, end_header: int) -> np.ndarray:
    """Per row, the position after the last ``<|end_header_id|>`` (the assistant header's), or
    the length when truncation cut the assistant header off (fewer than three headers)."""
    starts = np.full(len(ids), ids.shape[1])
    for row, tokens in enumerate(ids):
        headers = np.flatnonzero(tokens == end_header)
        if len(headers) >= 3:
            starts[row] = headers[-1] + 1
    return starts


def select(hidden: np.ndarray, ids: np.ndarray, mask: np.ndarray, template: ImagePromptTemplate,
           crop_start: int, end_header: int, interleave: int) -> tuple[np.ndarray, np.ndarray]:
    """The kept hidden states and their mask: every ``interleave``-th image feature (all when it
    is 0 or above 5), then the text from ``crop_start`` to the assistant header and what follows
    that header, the header's last tokens dropped.

    ``hidden [B, L + image_emb_len - 1, D]`` are the expanded sequence's; ``ids``/``mask [B, L]``
    the tokenizer's."""
    shift = template.image_emb_len - 1  # a text token's position in the expanded sequence, less its own
    image = hidden[:, template.image_emb_start:template.image_emb_end]
    if 0 < interleave < 6:
        image = image[:, ::interleave]
    texts, masks = [], []
    for row, start in enumerate(assistant_start(ids, end_header)):
        cut = start - ASSISTANT_TAIL
        texts.append(np.concatenate([hidden[row, crop_start + shift:cut + shift], hidden[row, start + shift:]]))
        masks.append(np.concatenate([mask[row, crop_start:cut], mask[row, start:]]))
    lengths = {len(m) for m in masks}
    if len(lengths) != 1 or min(lengths) < 1:
        raise ValueError(f"hunyuanvideo-llava: crop_start={crop_start} does not fit the template's tokens "
                         f"(the text kept would be {sorted(lengths)} tokens long); is crop_start the "
                         f"count of tokens before the prompt?")
    image_mask = np.ones(image.shape[:2], bool)
    return (np.concatenate([image, np.stack(texts)], axis=1),
            np.concatenate([image_mask, np.stack(masks)], axis=1))
