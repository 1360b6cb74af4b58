"""The LLaVA prompt+image encoder against transformers' ``LlavaForConditionalGeneration`` and
diffusers' ``HunyuanVideoImageToVideoPipeline.encode_prompt``, with identical random weights."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import mindspore as ms
import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPVisionConfig, CLIPVisionModel, LlavaForConditionalGeneration

import zoo
from contracts import ContractError
from plugins.common.checkpoint import CheckpointError
from plugins.common.weights import load_weights
from plugins.hunyuanvideo_llava.model import CLIPVisionTransformer
from plugins.hunyuanvideo_text.clip import ACTIVATIONS
from tests import llava_fixtures as fx
from tests.text_fixtures import clip_config, clip_tokenizer, prompts, randomized
from zoo.testkit import properties

seeds = st.integers(0, 2**16)


def assert_close(ours: np.ndarray, reference: np.ndarray, what: str) -> None:
    """Equal within 1e-4 of the reference's scale."""
    scale = max(float(np.abs(reference).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4 * scale, err_msg=what)


@st.composite
def vision_configs(draw) -> dict:
    heads = draw(st.sampled_from([1, 2]))
    patch = draw(st.sampled_from([2, 4]))
    return dict(num_hidden_layers=draw(st.integers(1, 3)), num_attention_heads=heads,
                hidden_size=heads * draw(st.sampled_from([2, 4, 8])), intermediate_size=draw(st.integers(4, 24)),
                hidden_act=draw(st.sampled_from(sorted(ACTIVATIONS))), patch_size=patch,
                image_size=patch * draw(st.integers(1, 3)), layer_norm_eps=draw(st.sampled_from([1e-5, 1e-6])))


@st.composite
def llava_configs(draw):
    kv_heads = draw(st.sampled_from([1, 2]))
    heads = kv_heads * draw(st.sampled_from([1, 2]))
    text = dict(num_hidden_layers=draw(st.integers(2, 3)), num_key_value_heads=kv_heads, num_attention_heads=heads,
                hidden_size=heads * draw(st.sampled_from([2, 4])), head_dim=draw(st.sampled_from([2, 4])),
                intermediate_size=draw(st.integers(4, 24)), attention_bias=draw(st.booleans()))
    vision = draw(vision_configs())
    feature_layer = draw(st.sampled_from([-2, -1, 0, [-2, -1]]))
    if feature_layer == -2 and vision["num_hidden_layers"] == 1:
        feature_layer = -1
    return fx.llava_config(text, vision, vision_feature_layer=feature_layer,
                           vision_feature_select_strategy=draw(st.sampled_from(["default", "full"])),
                           projector_hidden_act=draw(st.sampled_from(["gelu", "quick_gelu"])),
                           multimodal_projector_bias=draw(st.booleans()))


def images(rng: np.random.Generator, count: int) -> np.ndarray:
    height, width = rng.integers(3, 24, 2)
    return rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def token_count(prompt: str) -> int:
    return len(fx.tokenizer()(prompt, add_special_tokens=False)["input_ids"])


@given(vision_configs(), st.integers(1, 3), seeds)
def test_vision_tower_matches_transformers_at_every_hidden_state(fields, batch, seed):
    config = CLIPVisionConfig(**fields)
    reference = randomized(CLIPVisionModel(config), seed)
    pixels = np.random.default_rng(seed).standard_normal((batch, 3, config.image_size, config.image_size),
                                                         dtype=np.float32)
    with torch.no_grad():
        expected = reference(pixel_values=torch.from_numpy(pixels), output_hidden_states=True).hidden_states
    ours = CLIPVisionTransformer(config)
    with tempfile.TemporaryDirectory() as folder:
        state = {k: v.contiguous() for k, v in reference.state_dict().items() if "post_layernorm" not in k}
        save_file(state, Path(folder) / "model.safetensors")
        load_weights(ours, folder)
    indices = list(range(len(expected)))
    for index, hidden in zip(indices, ours.hidden_states(pixels, indices, ms.float32), strict=True):
        assert_close(hidden.asnumpy(), expected[index].numpy(), f"hidden_states[{index}]")


@given(llava_configs(), st.lists(prompts(8), min_size=1, max_size=3), st.integers(5, 20), st.integers(0, 6),
       st.booleans(), st.booleans(), st.sampled_from(["options", "call"]), seeds)
def test_encoder_matches_diffusers_encode_prompt(config, batch, max_length, interleave, count_crop, one_image,
                                                 how, seed):
    if len(batch) > 1:  # diffusers crops a batch only when no prompt loses its assistant header
        max_length = max(max_length, *(token_count(p) + 4 for p in batch))
    rng = np.random.default_rng(seed)
    pixels = images(rng, 1 if one_image else len(batch))
    template = fx.template(fx.expected_features(config), None if count_crop else fx.CROP_START)
    tok, processor = fx.tokenizer(), fx.image_processor(config.vision_config.image_size)
    llava = fx.reference_llava(config, seed)
    clip = randomized(CLIPTextModel(clip_config()), seed + 1)
    pipe = fx.reference_pipeline(llava, tok, processor, clip, clip_tokenizer())
    reference_images = [PIL.Image.fromarray(image) for image in pixels]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hidden, pooled, mask = (t.numpy() for t in pipe.encode_prompt(
            reference_images * (len(batch) if one_image else 1), batch, prompt_template=template,
            max_sequence_length=max_length, device="cpu", image_embed_interleave=interleave))
    per_call = {"prompt_template": template, "max_sequence_length": max_length, "image_embed_interleave": interleave}
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long prompts warn
        fx.save_pipeline(Path(folder), llava, tok, processor, clip, clip_tokenizer())
        encoder = zoo.load_component("encoder", "hunyuanvideo-i2v-text", weights=folder,
                                     **(per_call if how == "options" else {}))
        text = encoder.encode(batch, images=pixels, **(per_call if how == "call" else {}))
    mask = mask.astype(bool)
    assert np.array_equal(text.attention_mask, mask), "attention masks differ"
    assert text.hidden_states.shape == hidden.shape
    assert_close(text.hidden_states[mask], hidden[mask], "LLaVA hidden states at unmasked positions")
    assert_close(text.pooled, pooled, "CLIP pooled embeddings")


def test_truncated_prompt_keeps_what_diffusers_keeps():
    """A prompt cut before its assistant header is cropped at the end of the tokens, as diffusers does."""
    config = fx.llava_config()
    tok, processor = fx.tokenizer(), fx.image_processor(8)
    llava = fx.reference_llava(config, 11)
    pipe = fx.reference_pipeline(llava, tok, processor)
    prompt, pixels = "a cat walks on the grass in the city at night", images(np.random.default_rng(1), 1)
    template = fx.template(fx.expected_features(config))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hidden, mask = (t.numpy() for t in pipe._get_llama_prompt_embeds(
            PIL.Image.fromarray(pixels[0]), prompt, template, device="cpu", max_sequence_length=7))
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fx.save_pipeline(Path(folder), llava, tok, processor)
        text = zoo.load_component("encoder", "hunyuanvideo-llava", weights=folder, prompt_template=template,
                                  max_sequence_length=7).encode(prompt, images=pixels)
    mask = mask.astype(bool)
    assert np.array_equal(text.attention_mask, mask)
    assert_close(text.hidden_states[mask], hidden[mask], "hidden states of a truncated prompt")


def llava_parts(state: dict[str, torch.Tensor], names: str) -> dict[str, torch.Tensor]:
    """The state dict under transformers 4's names (``language_model.model.``,
    ``vision_tower.vision_model.``) or transformers 5's in-memory ones (``model.…``)."""
    out = {}
    for key, value in state.items():
        if names == "transformers-5":
            key = key.replace("language_model.model.", "model.language_model.").replace(
                "language_model.lm_head", "lm_head").replace("vision_tower.", "model.vision_tower.")
            key = key.replace("multi_modal_projector.", "model.multi_modal_projector.")
        else:
            key = key.replace("vision_tower.", "vision_tower.vision_model.")
        out[key] = value.contiguous()
    return out


@pytest.mark.parametrize("names", ["transformers-4", "transformers-5"])
def test_reads_checkpoints_under_either_transformers_names(names, tmp_path):
    """The published checkpoint was saved by transformers 4 (``language_model.model.``,
    ``vision_tower.vision_model.``); transformers 5 names the modules ``model.…``. transformers
    itself reads the renamed file to the same model, and so do we."""
    config = fx.llava_config()
    tok, processor = fx.tokenizer(), fx.image_processor(8)
    llava = fx.reference_llava(config, 5)
    fx.save_pipeline(tmp_path, llava, tok, processor)
    saved = tmp_path / "text_encoder" / "model.safetensors"
    save_file(llava_parts(load_file(saved), names), saved)
    reloaded = LlavaForConditionalGeneration.from_pretrained(tmp_path / "text_encoder").eval()
    for key, value in llava.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), f"transformers read {key} differently"
    prompt, pixels = ["a cat", "the dog walks"], images(np.random.default_rng(2), 2)
    template = fx.template(fx.expected_features(config))
    pipe = fx.reference_pipeline(llava, tok, processor)
    with torch.no_grad():
        hidden, mask = (t.numpy() for t in pipe._get_llama_prompt_embeds(
            [PIL.Image.fromarray(p) for p in pixels], prompt, template, device="cpu", max_sequence_length=8))
    text = zoo.load_component("encoder", "hunyuanvideo-llava", weights=tmp_path, prompt_template=template,
                              max_sequence_length=8).encode(prompt, images=pixels)
    mask = mask.astype(bool)
    assert_close(text.hidden_states[mask], hidden[mask], f"hidden states from a checkpoint under {names} names")


def test_narrow_weight_storage_computes_in_float32(tmp_path):
    """A bfloat16 checkpoint kept in bfloat16 gives what transformers gives in float32 from the same values."""
    config = fx.llava_config()
    tok, processor = fx.tokenizer(), fx.image_processor(8)
    fx.save_pipeline(tmp_path, fx.reference_llava(config, 7).to(torch.bfloat16), tok, processor)
    reference = LlavaForConditionalGeneration.from_pretrained(tmp_path / "text_encoder", dtype=torch.float32).eval()
    prompt, pixels = "a cat walks on the grass", images(np.random.default_rng(3), 1)
    template = fx.template(fx.expected_features(config))
    with torch.no_grad():
        hidden, mask = (t.numpy() for t in fx.reference_pipeline(reference, tok, processor)._get_llama_prompt_embeds(
            PIL.Image.fromarray(pixels[0]), prompt, template, device="cpu", max_sequence_length=10))
    text = zoo.load_component("encoder", "hunyuanvideo-llava", weights=tmp_path, weight_dtype="bfloat16",
                              compute_dtype="float32", prompt_template=template,
                              max_sequence_length=10).encode(prompt, images=pixels)
    mask = mask.astype(bool)
    assert_close(text.hidden_states[mask], hidden[mask], "hidden states from bfloat16 storage")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A saved tiny LLaVA with its tokenizer and image processor."""
    return fx.save_pipeline(tmp_path_factory.mktemp("llava"), fx.reference_llava(fx.llava_config(), 0),
                            fx.tokenizer(), fx.image_processor(8))


TINY_TEMPLATE = fx.template(4)


def encoder(folder: Path, **options):
    return zoo.load_component("encoder", "hunyuanvideo-llava", weights=folder,
                              **{"prompt_template": TINY_TEMPLATE, "max_sequence_length": 8, **options})


@pytest.mark.parametrize("prop", properties("encoder"), ids=lambda p: p.id)
def test_contract(prop, folder, tmp_path_factory):
    """The encoder contract (image-taking encoders included) on the composite."""
    pipeline = tmp_path_factory.mktemp("i2v")
    for part in ("text_encoder", "tokenizer", "image_processor"):
        (pipeline / part).symlink_to(folder / part)
    randomized(CLIPTextModel(clip_config()), 1).save_pretrained(pipeline / "text_encoder_2")
    clip_tokenizer().save_pretrained(pipeline / "tokenizer_2")
    prop.check(lambda: zoo.load_component("encoder", "hunyuanvideo-i2v-text", weights=pipeline,
                                          prompt_template=TINY_TEMPLATE, max_sequence_length=12))


def test_without_an_image_says_it_needs_one(folder):
    with pytest.raises(ValueError, match="needs an image: encode\\(prompts, images=...\\)"):
        encoder(folder).encode(["a cat"])


@pytest.mark.parametrize(("pixels", "message"), [
    (np.zeros((1, 8, 8, 3), np.float32), "expected 8-bit pixels"),
    (np.zeros((1, 3, 8, 8), np.uint8), "expected RGB images \\[B, H, W, 3\\]"),
    (np.zeros((1, 8, 8), np.uint8), "expected RGB images"),
    (np.zeros((1, 8, 8, 4), np.uint8), "expected RGB images"),
    (np.zeros((2, 8, 8, 3), np.uint8), "got 2 images for 3 prompts"),
])
def test_images_of_the_wrong_layout_are_refused(folder, pixels, message):
    with pytest.raises(ValueError, match=message):
        encoder(folder).encode(["a cat", "dog", "bird"] if len(pixels) == 2 else ["a cat"], images=pixels)
    assert issubclass(ContractError, ValueError)


def test_tokenizer_without_the_image_token_is_named(folder, tmp_path):
    fx.tokenizer(image_token=False).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="the tokenizer has no image token: the model's image_token_index 7 is 'a'"):
        encoder(folder, tokenizer=tmp_path)


def test_prompt_holding_the_image_token_is_refused(folder):
    with pytest.raises(ValueError, match="prompt 1 has 2 image tokens"):
        encoder(folder).encode(["a cat", "a <image> cat"], images=np.zeros((1, 8, 8, 3), np.uint8))


def test_template_that_misplaces_the_image_says_where_it_is(folder, tmp_path):
    """Left padding (or a wrong image_emb_start) puts the image token elsewhere than the template says."""
    fx.tokenizer("left").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="image token is token 6, but its image_emb_start is 4"):
        encoder(folder, tokenizer=tmp_path).encode(["a cat", "a cat walks on"],
                                                   images=np.zeros((1, 8, 8, 3), np.uint8))


def test_image_emb_len_must_match_the_vision_tower(folder):
    template = {**TINY_TEMPLATE, "image_emb_len": 5, "image_emb_end": 9}
    with pytest.raises(ValueError, match="gives 4 features per image.*set image_emb_len=4"):
        encoder(folder, prompt_template=template).encode("a cat", images=np.zeros((1, 8, 8, 3), np.uint8))


@pytest.mark.parametrize(("template", "message"), [
    ({**TINY_TEMPLATE, "crop_start": 0}, "crop_start"),
    ({**TINY_TEMPLATE, "image_emb_end": 7}, "image_emb_end - image_emb_start must equal image_emb_len"),
    ({**TINY_TEMPLATE, "template": "no placeholder <image>"}, "needs a '{}'"),
])
def test_bad_templates_are_named(folder, template, message):
    with pytest.raises(ValueError, match=message):
        encoder(folder).encode("a cat", images=np.zeros((1, 8, 8, 3), np.uint8), prompt_template=template)


def test_random_build_needs_tokenizer_architecture_and_image_processor(folder):
    with pytest.raises(ValueError, match="needs the options tokenizer and text_config"):
        zoo.load_component("encoder", "hunyuanvideo-llava")
    options = {"tokenizer": folder / "tokenizer", "text_config": fx.llava_config().to_dict()}
    with pytest.raises(ValueError, match="needs the option 'image_processor'"):
        zoo.load_component("encoder", "hunyuanvideo-llava", **options)
    built = zoo.load_component("encoder", "hunyuanvideo-llava", image_processor=folder / "image_processor",
                               prompt_template=TINY_TEMPLATE, max_sequence_length=8, **options)
    text = built.encode(["a cat", "dog"], images=np.zeros((1, 8, 8, 3), np.uint8))
    assert text.hidden_states.shape == (2, 4 // 2 + 8 - 4, 16) and text.pooled is None


def test_missing_image_processor_folder_is_named(folder, tmp_path):
    with pytest.raises(CheckpointError, match="image processor: folder .*nowhere does not exist"):
        encoder(folder, image_processor=tmp_path / "nowhere")


def test_tiny_i2v_text_encoders_read_by_diffusers_and_by_us(tmp_path):
    """The tiny I2V encoders folder (``zoo.tiny_llava``) loads in transformers as it is, and encodes
    there as here."""
    from transformers import AutoTokenizer, CLIPImageProcessor

    from zoo.tiny_llava import write_tiny_i2v_text_encoders

    template = write_tiny_i2v_text_encoders(tmp_path)
    llava = LlavaForConditionalGeneration.from_pretrained(tmp_path / "text_encoder").eval()
    clip = CLIPTextModel.from_pretrained(tmp_path / "text_encoder_2").eval()
    pipe = fx.reference_pipeline(llava, AutoTokenizer.from_pretrained(tmp_path / "tokenizer"),
                                 CLIPImageProcessor.from_pretrained(tmp_path / "image_processor"), clip,
                                 AutoTokenizer.from_pretrained(tmp_path / "tokenizer_2"))
    batch, pixels = ["a cat walks on the grass", "a dog"], images(np.random.default_rng(4), 2)
    with torch.no_grad():
        hidden, pooled, mask = (t.numpy() for t in pipe.encode_prompt(
            [PIL.Image.fromarray(p) for p in pixels], batch, prompt_template=template, max_sequence_length=40,
            device="cpu"))
    text = zoo.load_component("encoder", "hunyuanvideo-i2v-text", weights=tmp_path, prompt_template=template,
                              max_sequence_length=40).encode(batch, images=pixels)
    mask = mask.astype(bool)
    assert np.array_equal(text.attention_mask, mask)
    assert_close(text.hidden_states[mask], hidden[mask], "hidden states of the tiny I2V encoders")
    assert_close(text.pooled, pooled, "pooled embeddings of the tiny I2V encoders")


def test_streamed_weights_equal_resident(folder):
    """Run from the memory-mapped checkpoint, the encoder gives what it gives with its weights read."""
    pixels = images(np.random.default_rng(5), 2)
    batch = ["a cat walks on the grass", "dog"]
    resident = encoder(folder, stream_weights="off").encode(batch, images=pixels)
    streamed = encoder(folder, stream_weights="on").encode(batch, images=pixels)
    assert np.array_equal(resident.hidden_states, streamed.hidden_states)
    assert np.array_equal(resident.attention_mask, streamed.attention_mask)
