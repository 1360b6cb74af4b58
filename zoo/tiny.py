"""``hunyuanvideo-tiny``, ``hunyuanvideo-i2v-tiny`` and ``skyreels-v1-tiny``: the embedded default
pipelines (text to video, image to video), built on this machine, never downloaded.

Every component has HunyuanVideo's architecture at a tiny size, with weights drawn
from fixed seeds and tokenizers built in memory. It is written once as an ordinary
diffusers-format folder in the cache (``$HUNYUAN_ZOO_CACHE``, else
``~/.cache/hunyuan-zoo``) and loaded through the same path as a real checkpoint.
Its weights are random: it proves the install and the machinery, not the model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTokenizer, LlamaConfig, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

VERSION = 1  # bump when anything below changes, so an old cached folder is not reused
SEED = 0

TRANSFORMER = dict(in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=16,
                   num_layers=1, num_single_layers=1, num_refiner_layers=1, mlp_ratio=2.0,
                   patch_size=2, patch_size_t=1, text_embed_dim=32, pooled_projection_dim=16,
                   rope_axes_dim=(4, 6, 6), guidance_embeds=True)
VAE = dict(latent_channels=16, block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4)
SCHEDULER = dict(num_train_timesteps=1000, shift=7.0)

LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eot_id|>", "<|pad|>", "{}"]
CLIP_SPECIALS = ["<|startoftext|>", "<|endoftext|>"]


def llama_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level, so every prompt has its own tokens, with LLaMA-3's header tokens whole.

    ``{}`` is one token too, so a template's ``crop_start`` counts as diffusers counts it.
    """
    symbols = list(bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate([*symbols, *LLAMA_SPECIALS])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bos = LLAMA_SPECIALS[0]
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=LLAMA_SPECIALS[1],
                                   pad_token="<|pad|>", additional_special_tokens=LLAMA_SPECIALS[2:5] + ["{}"])


def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's byte-level BPE over every byte, without merges; end-of-text is the highest id."""
    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *CLIP_SPECIALS]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])


def llama_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=TRANSFORMER["text_embed_dim"],
                       intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def clip_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    size = len(tokenizer)
    return CLIPTextConfig(vocab_size=size, hidden_size=TRANSFORMER["pooled_projection_dim"], intermediate_size=32,
                          num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                          bos_token_id=size - 2, eos_token_id=size - 1, pad_token_id=size - 1)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def write_tiny_pipeline(folder: Path, transformer_options: dict[str, Any] | None = None,
                        pipeline_class: str = "HunyuanVideoPipeline") -> None:
    """Write the tiny pipeline into ``folder`` in diffusers' layout; ``transformer_options`` change the
    transformer's config (SkyReels-V1's 32 input channels, say), ``pipeline_class`` names it."""
    from plugins.common.options import OWN_OPTIONS
    from plugins.common.weights import save_weights, seed_parameters
    from plugins.hunyuanvideo_text.clip_encoder import ClipTextEncoder
    from plugins.hunyuanvideo_text.config import ClipEncoderConfig, LlamaEncoderConfig
    from plugins.hunyuanvideo_text.llama_encoder import LlamaTextEncoder
    from plugins.hunyuanvideo_transformer.backbone import HunyuanVideoTransformer
    from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
    from plugins.hunyuanvideo_vae.config import HunyuanVideoVAEConfig
    from plugins.hunyuanvideo_vae.model import HunyuanVideoVAE

    transformer_config = HunyuanVideoTransformerConfig(**{**TRANSFORMER, **(transformer_options or {})})
    transformer = HunyuanVideoTransformer(transformer_config).network
    vae_config = HunyuanVideoVAEConfig(**VAE)
    vae = HunyuanVideoVAE(vae_config).model
    tokenizer, tokenizer_2 = llama_tokenizer(), clip_tokenizer()
    llama, clip = llama_config(tokenizer), clip_config(tokenizer_2)
    llama_model = LlamaTextEncoder(LlamaEncoderConfig(seed=SEED), tokenizer, llama).model
    clip_model = ClipTextEncoder(ClipEncoderConfig(seed=SEED + 1), tokenizer_2, clip).model
    for offset, (subfolder, cell) in enumerate([("transformer", transformer), ("vae", vae),
                                                 ("text_encoder", llama_model), ("text_encoder_2", clip_model)]):
        seed_parameters(cell, SEED + offset)
        save_weights(cell, folder / subfolder)
    ours = set(OWN_OPTIONS)  # options of ours, not diffusers' config keys
    _write_json(folder / "transformer" / "config.json", {
        "_class_name": "HunyuanVideoTransformer3DModel", **transformer_config.model_dump(exclude=ours)})
    _write_json(folder / "vae" / "config.json", {
        "_class_name": "AutoencoderKLHunyuanVideo", **vae_config.model_dump(exclude={*ours, "tiling", "slicing"})})
    _write_json(folder / "scheduler" / "scheduler_config.json", {
        "_class_name": "FlowMatchEulerDiscreteScheduler", **SCHEDULER})
    llama.save_pretrained(folder / "text_encoder")
    clip.save_pretrained(folder / "text_encoder_2")
    tokenizer.save_pretrained(folder / "tokenizer")
    tokenizer_2.save_pretrained(folder / "tokenizer_2")
    _write_json(folder / "model_index.json", {
        "_class_name": pipeline_class,
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "LlamaModel"],
        "text_encoder_2": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "transformer": ["diffusers", "HunyuanVideoTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLHunyuanVideo"],
    })


def cache_root() -> Path:
    return Path(os.environ.get("HUNYUAN_ZOO_CACHE", Path.home() / ".cache" / "hunyuan-zoo"))


def tiny_pipeline_folder() -> Path:
    """The tiny pipeline's folder, written on first use (to a temporary name, then renamed)."""
    return cached_folder(f"hunyuanvideo-tiny-v{VERSION}", write_tiny_pipeline)


def tiny_skyreels_folder() -> Path:
    """The tiny SkyReels-V1 image-to-video pipeline: the tiny pipeline with a 32-channel transformer
    (latents and the image's latents), written on first use."""
    return cached_folder(f"skyreels-v1-tiny-v{VERSION}", lambda folder: write_tiny_pipeline(
        folder, {"in_channels": 2 * TRANSFORMER["out_channels"]}, "HunyuanSkyreelsImageToVideoPipeline"))


def tiny_i2v_folder() -> Path:
    """The tiny HunyuanVideo-I2V pipeline (``token_replace``): the tiny pipeline with LLaVA and CLIP text
    encoders (``zoo.tiny_llava``) in place of LLaMA and CLIP, written on first use."""
    return cached_folder(f"hunyuanvideo-i2v-tiny-v{VERSION}", write_tiny_i2v_pipeline)


def write_tiny_i2v_pipeline(folder: Path) -> None:
    from zoo.tiny_llava import write_tiny_i2v_text_encoders

    write_tiny_pipeline(folder, {"image_condition_type": "token_replace"}, "HunyuanVideoImageToVideoPipeline")
    for name in ("text_encoder", "tokenizer"):
        shutil.rmtree(folder / name)
    write_tiny_i2v_text_encoders(folder)
    index = json.loads((folder / "model_index.json").read_text())
    _write_json(folder / "model_index.json", {
        **index, "text_encoder": ["transformers", "LlavaForConditionalGeneration"],
        "image_processor": ["transformers", "CLIPImageProcessor"]})


def cached_folder(name: str, write: Callable[[Path], None]) -> Path:
    """``cache_root() / name``, written by ``write`` on first use (to a temporary name, then renamed,
    so an interrupted write leaves nothing that looks complete)."""
    folder = cache_root() / name
    if not (folder / "model_index.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            write(staging)
            if not folder.exists():
                os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder
