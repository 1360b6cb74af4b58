"""Encode time of ``hunyuanvideo-llava`` beside diffusers' ``HunyuanVideoImageToVideoPipeline``
LLaVA encoding (transformers' ``LlavaForConditionalGeneration``) at the published widths, fp32,
same weights, same inputs, measured in one run, interleaved.

The vision tower is CLIP ViT-L/14 at 336 pixels (24 layers of width 1024, 576 image tokens, the
second-to-last layer read); the language model has LLaMA-3 8B's widths (4096, 32 heads, 8
key/value heads, MLP 14336) with ``--llama-layers`` layers (the published 32 do not fit beside a
second copy in this machine's memory), all run: the published encoder reads the third-to-last
hidden state, where diffusers runs all 32 layers and ours the 30 it reads, so here both read the
last (``num_hidden_layers_to_skip=0``) to compare the same work. The tokenizer is
the tiny byte-level one of ``zoo.tiny_llava`` with its template; the image is a random 544 x 960
RGB image, resized and cropped by ``CLIPImageProcessor``::

    GLOG_v=3 python benchmarks/bench_llava.py [--repeats 3] [--threads 2] [--llama-layers 2]

Other engineers' jobs share the cores, so every figure is a median over rounds that take turns
(one call of each contender per round, after a warm-up round), and the comparison is the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import numpy as np
import PIL.Image
import torch
from bench_backbone import interleaved, load, parse_with_threads  # this folder is on the path when a benchmark runs
from diffusers import HunyuanVideoImageToVideoPipeline
from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

import zoo
from zoo.tiny_llava import llava_tokenizer, prompt_template

IMAGE_SIZE, IMAGE_TOKENS = 336, 576
PROMPT = ("A man with short gray hair plays a red electric guitar on a small stage, the camera slowly "
          "circling him while warm lights flicker behind.")


def config(tokenizer, llama_layers: int) -> LlavaConfig:
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=llama_layers, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=8192, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, rms_norm_eps=1e-5)
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                              image_size=IMAGE_SIZE, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    return LlavaConfig(vision_config=vision, text_config=text, pad_token_id=tokenizer.pad_token_id,
                       image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=IMAGE_TOKENS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--llama-layers", type=int, default=2, help="LLaMA layers (all run)")
    parser.add_argument("--max-sequence-length", type=int, default=256)
    args = parse_with_threads(parser)

    tokenizer, skip = llava_tokenizer(), 0
    processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                   crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=3)
    template = prompt_template(tokenizer)
    template.update(image_emb_len=IMAGE_TOKENS, image_emb_end=template["image_emb_start"] + IMAGE_TOKENS)
    torch.manual_seed(0)
    reference = LlavaForConditionalGeneration(config(tokenizer, args.llama_layers)).eval()
    pipe = HunyuanVideoImageToVideoPipeline(text_encoder=reference, tokenizer=tokenizer, transformer=None, vae=None,
                                            scheduler=None, text_encoder_2=None, tokenizer_2=None,
                                            image_processor=processor)
    pixels = np.random.default_rng(0).integers(0, 256, (1, 544, 960, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(pixels[0])
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(f"{folder}/text_encoder")
        tokenizer.save_pretrained(f"{folder}/tokenizer")
        processor.save_pretrained(f"{folder}/image_processor")
        ours = zoo.load_component("encoder", "hunyuanvideo-llava", weights=folder, prompt_template=template,
                                  max_sequence_length=args.max_sequence_length, compute_dtype="float32",
                                  num_hidden_layers_to_skip=skip)

    def run_reference() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            hidden, mask = pipe._get_llama_prompt_embeds(image, PROMPT, template, device="cpu",
                                                         max_sequence_length=args.max_sequence_length,
                                                         num_hidden_layers_to_skip=skip)
        return hidden.numpy(), mask.numpy().astype(bool)

    def run_ours() -> tuple[np.ndarray, np.ndarray]:
        text = ours.encode(PROMPT, images=pixels)
        return text.hidden_states, text.attention_mask

    (expected, mask), (got, got_mask) = run_reference(), run_ours()
    assert np.array_equal(mask, got_mask), "masks differ"
    difference = float(np.abs(got[mask] - expected[mask]).max())
    times = interleaved({"diffusers fp32": run_reference, "ours fp32": run_ours}, args.repeats)
    median = {name: statistics.median(samples) for name, samples in times.items()}
    real = len(tokenizer(template["template"].format(PROMPT))["input_ids"]) + IMAGE_TOKENS - 1
    total = args.max_sequence_length + template["crop_start"] + IMAGE_TOKENS - 1
    print(f"LLaVA: CLIP ViT-L/14-{IMAGE_SIZE} (24 layers) + LLaMA at 8B widths, {args.llama_layers} layers run; "
          f"sequence {total} tokens, {real} of them real; image 544x960")
    for name, samples in times.items():
        print(f"  {name}: median {median[name]:.2f} s over {len(samples)} rounds "
              f"({', '.join(f'{s:.2f}' for s in samples)})")
    print(f"  ours / diffusers fp32: {median['ours fp32'] / median['diffusers fp32']:.2f}")
    print(f"  max abs difference at real tokens: {difference:.2e} (scale {float(np.abs(expected[mask]).max()):.2f})")
    print(f"{load()} at end")


if __name__ == "__main__":
    main()
