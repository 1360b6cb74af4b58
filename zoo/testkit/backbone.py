"""Contract properties of any backbone: ``backbone(latents, timestep, text, guidance, image=None)``.

Inputs are drawn from what the component's config says: the latents' channels
(``out_channels``, else ``in_channels``), ``patch_size``/``patch_size_t``,
``text_embed_dim``, ``pooled_projection_dim``, ``guidance_embeds``, and, for a backbone
that declares ``image_conditioning``, the conditioning image's latents ``[B, C, 1, h, w]``.
Sizes stay tiny so a property runs in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from contracts import IMAGE_CONDITIONING, TextEmbeddings, image_conditioning, latent_channels_of
from zoo.testkit.core import Make, contract_property

# Outputs that should agree up to rounding may differ by this much, relative to their scale.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class BackboneInputs:
    latents: np.ndarray
    timestep: np.ndarray
    text: TextEmbeddings
    guidance: np.ndarray | None
    image: np.ndarray | None = None  # the conditioning image's latents, for an image-conditioned backbone

    def call(self, backbone: Any) -> np.ndarray:
        extra = {} if self.image is None else {"image": self.image}
        return backbone(self.latents, self.timestep, self.text, guidance=self.guidance, **extra)

    def select(self, index: list[int]) -> BackboneInputs:
        guidance = None if self.guidance is None else self.guidance[index]
        image = None if self.image is None else self.image[index]
        return BackboneInputs(self.latents[index], self.timestep[index], self.text.select(index), guidance, image)

    def replace(self, **fields: Any) -> BackboneInputs:
        return BackboneInputs(**{**self.__dict__, **fields})


@st.composite
def backbone_inputs(draw: st.DrawFn, config: Any, min_batch: int = 1, max_batch: int = 2) -> BackboneInputs:
    """Latents of a few patches, timesteps in [0, 1000], text with at least one real
    token per item (padding anywhere), and a guidance scale when the model embeds one."""
    batch = draw(st.integers(min_batch, max_batch))
    pt, p = int(config.patch_size_t), int(config.patch_size)
    frames, height, width = (draw(st.integers(1, 2)) * pt, draw(st.integers(1, 2)) * p,
                             draw(st.integers(1, 2)) * p)
    length = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = rng.random((batch, length)) < draw(st.floats(0.3, 1.0))
    mask[np.arange(batch), rng.integers(0, length, batch)] = True
    pooled_dim = getattr(config, "pooled_projection_dim", None)
    text = TextEmbeddings(
        hidden_states=rng.standard_normal((batch, length, int(config.text_embed_dim)), dtype=np.float32),
        attention_mask=mask,
        pooled=None if pooled_dim is None else rng.standard_normal((batch, int(pooled_dim)), dtype=np.float32),
    )
    shape = (batch, latent_channels_of(config), frames, height, width)
    latents = rng.standard_normal(shape, dtype=np.float32)
    timestep = rng.uniform(0.0, 1000.0, batch).astype(np.float32)
    guidance = rng.uniform(1.0, 10.0, batch).astype(np.float32) if config.guidance_embeds else None
    image = None
    if image_conditioning(config) != "none":
        image = rng.standard_normal((*shape[:2], 1, *shape[3:]), dtype=np.float32)
    return BackboneInputs(latents, timestep, text, guidance, image)


def _assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(actual - expected).max())
    assert diff <= TOLERANCE * scale, f"{what}: max abs difference {diff:.3g} (output scale {scale:.3g})"


@contract_property("backbone", "the output has the latents' shape, float32 and finite")
def output_shape_is_input_shape(make: Make) -> None:
    backbone = make()

    @given(backbone_inputs(backbone.config))
    def check(inputs: BackboneInputs) -> None:
        out = inputs.call(backbone)
        assert isinstance(out, np.ndarray), f"expected a numpy array, got {type(out).__name__}"
        assert out.shape == inputs.latents.shape, f"output {out.shape} != latents {inputs.latents.shape}"
        assert out.dtype == np.float32, f"output dtype {out.dtype}, expected float32"
        assert np.isfinite(out).all(), "output has non-finite values"

    check()


@contract_property("backbone", "each batch item's output equals that item run alone")
def batch_items_are_independent(make: Make) -> None:
    backbone = make()

    @given(backbone_inputs(backbone.config, min_batch=2, max_batch=2))
    def check(inputs: BackboneInputs) -> None:
        together = inputs.call(backbone)
        for item in range(inputs.latents.shape[0]):
            alone = inputs.select([item]).call(backbone)
            _assert_close(together[item:item + 1], alone, f"batch item {item} vs run alone")

    check()


@contract_property("backbone", "text embeddings at padded positions do not change the output")
def padded_text_is_ignored(make: Make) -> None:
    backbone = make()

    @given(backbone_inputs(backbone.config), st.integers(0, 2**32 - 1))
    def check(inputs: BackboneInputs, seed: int) -> None:
        text = inputs.text
        padded = ~text.attention_mask
        noise = np.random.default_rng(seed).standard_normal(text.hidden_states.shape, dtype=np.float32)
        changed = np.where(padded[..., None], 10.0 * noise, text.hidden_states).astype(np.float32)
        other = inputs.replace(text=TextEmbeddings(hidden_states=changed, attention_mask=text.attention_mask,
                                                   pooled=text.pooled))
        _assert_close(other.call(backbone), inputs.call(backbone), "with padded embeddings changed")

    check()


@contract_property("backbone", "the same inputs give the same output")
def deterministic(make: Make) -> None:
    backbone = make()

    @given(backbone_inputs(backbone.config))
    def check(inputs: BackboneInputs) -> None:
        first, second = inputs.call(backbone), inputs.call(backbone)
        assert np.array_equal(first, second), (
            f"two calls differ by up to {float(np.abs(first - second).max()):.3g}")

    check()


@contract_property("backbone", "it declares an image conditioning the pipeline knows (none, latent_concat, "
                               "token_replace), with latent_concat's channels the latents' (and a mask)")
def declares_its_image_conditioning(make: Make) -> None:
    config = make().config
    kind = image_conditioning(config)
    assert kind in IMAGE_CONDITIONING, f"image_conditioning {kind!r}"
    if kind == "latent_concat":
        channels, extra = latent_channels_of(config), int(getattr(config, "condition_channels", -1))
        assert extra in (channels, channels + 1), (
            f"latent_concat with condition_channels={extra}: expected {channels} (the image's latents) or "
            f"{channels + 1} (and a first-frame mask)")


@contract_property("backbone", "an image-conditioned backbone's output depends on the conditioning image "
                               "(nothing to show for one of none)")
def the_image_reaches_the_output(make: Make) -> None:
    backbone = make()
    if image_conditioning(backbone.config) == "none":
        return

    @given(backbone_inputs(backbone.config), st.integers(0, 2**32 - 1))
    def check(inputs: BackboneInputs, seed: int) -> None:
        other = np.random.default_rng(seed).standard_normal(inputs.image.shape, dtype=np.float32)
        first, second = inputs.call(backbone), inputs.replace(image=inputs.image + 1 + other).call(backbone)
        assert not np.allclose(first, second, rtol=0, atol=1e-6), "a different image gave the same output"

    check()


@contract_property("backbone", "under token_replace the first latent frame is the image's: what the latents "
                               "hold there does not change the output (nothing to show for other conditionings)")
def token_replace_ignores_the_first_frame(make: Make) -> None:
    backbone = make()
    if image_conditioning(backbone.config) != "token_replace":
        return

    @given(backbone_inputs(backbone.config), st.integers(0, 2**32 - 1))
    def check(inputs: BackboneInputs, seed: int) -> None:
        latents = inputs.latents.copy()
        latents[:, :, 0] = np.random.default_rng(seed).standard_normal(latents[:, :, 0].shape, dtype=np.float32)
        _assert_close(inputs.replace(latents=latents).call(backbone), inputs.call(backbone),
                      "with the first latent frame changed")

    check()
