"""Contract properties of encoders: prompts in, ``TextEmbeddings`` out.

An encoder whose config declares ``takes_images`` gets an image with each prompt, drawn from
the prompt's text so that a prompt has the same image alone and in a batch.
"""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from contracts import ContractError, TextEmbeddings, takes_images
from zoo.testkit.core import Make, contract_property

_WORDS = "a the cat dog walks runs on grass at night red slowly camera video".split()
word = st.one_of(st.sampled_from(_WORDS), st.text(min_size=1, max_size=8))
prompt = st.lists(word, max_size=10).map(" ".join)
batches = st.lists(prompt, min_size=1, max_size=3)


IMAGE_SIZE = (24, 32)  # height, width: not square, so a resize that swaps them shows


def image_of(prompt: str, salt: int = 0) -> np.ndarray:
    """An 8-bit RGB image ``[H, W, 3]`` determined by the prompt."""
    rng = np.random.default_rng(zlib.crc32(prompt.encode()) + salt)
    return rng.integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8)


def _encode(encoder, prompts: list[str], salt: int = 0) -> TextEmbeddings:
    if takes_images(encoder.config):
        text = encoder.encode(prompts, images=np.stack([image_of(p, salt) for p in prompts]))
    else:
        text = encoder.encode(prompts)
    assert isinstance(text, TextEmbeddings), f"encode() returned {type(text).__name__}, not TextEmbeddings"
    assert text.batch_size == len(prompts), f"{len(prompts)} prompts gave a batch of {text.batch_size}"
    return text


def _close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    scale = max(float(np.abs(b).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale, err_msg=what)


@contract_property("encoder", "a batch encodes each prompt as it encodes alone")
def batch_equals_single(make: Make) -> None:
    encoder = make()

    @given(batches)
    def check(prompts: list[str]) -> None:
        together = _encode(encoder, prompts)
        for index, single in enumerate(prompts):
            alone = _encode(encoder, [single])
            mask = alone.attention_mask[0]
            assert np.array_equal(together.attention_mask[index], mask), (
                f"prompt {index} ({single!r}): its mask in a batch differs from its mask alone")
            _close(together.hidden_states[index][mask], alone.hidden_states[0][mask],
                   f"prompt {index} ({single!r}): hidden states in a batch differ from alone")
            assert (together.pooled is None) == (alone.pooled is None), "pooled is sometimes None"
            if alone.pooled is not None:
                _close(together.pooled[index], alone.pooled[0],
                       f"prompt {index} ({single!r}): pooled in a batch differs from alone")

    check()


@contract_property("encoder", "masks are prefix-shaped: valid tokens first, at least one")
def masks_are_prefixes(make: Make) -> None:
    encoder = make()

    @given(batches)
    def check(prompts: list[str]) -> None:
        mask = _encode(encoder, prompts).attention_mask
        counts = mask.sum(-1)
        assert np.all(counts >= 1), f"a prompt has no valid token: valid counts {counts.tolist()}"
        prefix = np.arange(mask.shape[1])[None, :] < counts[:, None]
        assert np.array_equal(mask, prefix), f"a mask is not a prefix of valid tokens: {mask.astype(int)}"

    check()


@contract_property("encoder", "every call gives the same length and widths; values are finite")
def shapes_are_fixed(make: Make) -> None:
    encoder = make()
    first = _encode(encoder, ["a cat"])

    @given(batches)
    def check(prompts: list[str]) -> None:
        text = _encode(encoder, prompts)
        assert text.hidden_states.shape[1:] == first.hidden_states.shape[1:], (
            f"hidden states {text.hidden_states.shape[1:]} here, {first.hidden_states.shape[1:]} before")
        assert (text.pooled is None) == (first.pooled is None), "pooled is sometimes None"
        if text.pooled is not None:
            assert text.pooled.shape[1:] == first.pooled.shape[1:], (
                f"pooled {text.pooled.shape[1:]} here, {first.pooled.shape[1:]} before")
            assert np.isfinite(text.pooled).all(), "pooled has non-finite values"
        assert np.isfinite(text.hidden_states).all(), "hidden states have non-finite values (or in padding)"

    check()


@contract_property("encoder", "two builds encode the same prompts identically")
def deterministic(make: Make) -> None:
    first, second = make(), make()

    @given(batches)
    def check(prompts: list[str]) -> None:
        a, b = _encode(first, prompts), _encode(second, prompts)
        assert np.array_equal(a.attention_mask, b.attention_mask), "masks differ between builds"
        assert np.array_equal(a.hidden_states, b.hidden_states), "hidden states differ between builds"
        if a.pooled is not None or b.pooled is not None:
            assert a.pooled is not None and b.pooled is not None, "pooled is None in one build only"
            assert np.array_equal(a.pooled, b.pooled), "pooled differs between builds"

    check()


@contract_property("encoder", "an encoder that takes images: a prompt's image changes its hidden states, and "
                              "images that are not 8-bit RGB [B, H, W, 3] are a ContractError (nothing to show "
                              "for a prompt-only encoder)")
def images_are_read_and_checked(make: Make) -> None:
    encoder = make()
    if not takes_images(encoder.config):
        return

    @given(batches)
    def check(prompts: list[str]) -> None:
        first, second = _encode(encoder, prompts), _encode(encoder, prompts, salt=1)
        assert not np.allclose(first.hidden_states, second.hidden_states, rtol=0, atol=1e-6), (
            "other images gave the same hidden states")
        images = np.stack([image_of(p) for p in prompts])
        for bad, what in ((images.astype(np.float32), "float pixels"), (images[..., :2], "two channels")):
            try:
                encoder.encode(prompts, images=bad)
            except ContractError:
                continue
            raise AssertionError(f"images with {what} were accepted")

    check()
