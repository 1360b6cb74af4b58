"""Full size: ``zoo generate`` beside diffusers on a random checkpoint of HunyuanVideo's
published size, stage by stage: wall time, peak resident memory (RSS) and bytes read.

The checkpoint is written once, in the layout of ``hunyuanvideo-community/HunyuanVideo``
(41.9 GB): ``model_index.json``; ``transformer/`` (13B, bf16, 6 shards of at most 5 GB and
``diffusion_pytorch_model.safetensors.index.json``); ``text_encoder/`` (LLaMA-3 8B without
its head, fp16, 4 shards and ``model.safetensors.index.json``); ``text_encoder_2/`` (CLIP-L
text model, fp16, one ``model.safetensors``); ``vae/`` (fp32, one file, as published);
``scheduler/`` (flow-match Euler, shift 7.0); ``tokenizer/`` and ``tokenizer_2/``. Names,
shapes and configs come from diffusers' and transformers' models built on PyTorch's
``meta`` device; values are random, cut from one pre-drawn block of normal x 0.02 at a
different offset per tensor (norm weights are 1). Each safetensors shard is streamed to
disk tensor by tensor (header first, offsets computed from the shapes), so writing holds
about 70 MB, never a model. The folder is written under a temporary name and renamed into
place when complete; a complete folder is reused; it is deleted at the end unless ``--keep``.

The tokenizers are built here (there is no download): LLaMA-3's pre-tokenizer pattern with
a byte-level BPE trained on the prompt template, so that the template's 95 tokens before
the prompt are the 95 that diffusers' default ``crop_start`` drops, and LLaMA-3's special
tokens at LLaMA-3's ids (128000-128255, pad 128256) inside the model's 128320 rows; CLIP's
byte-level tokenizer with its start/end tokens at 49406/49407 of 49408.

Then each contender runs in a fresh process, after the checkpoint's pages are dropped from
the page cache (``posix_fadvise``; ``--warm`` keeps them):

- ours: ``zoo generate PROMPT --model FOLDER --height 64 --width 64 --frames 9 --steps 2
  --memory auto --stats FILE``; the stats file gives each stage's seconds, peak RSS and
  bytes read, and the process's peak RSS, cross-checked with ``ru_maxrss`` from ``wait4``;
- diffusers: the same stages by hand (load the text encoders, encode, load the
  transformer, denoise, load the VAE, decode), in fp32 and, as a second row, bf16
  (``--diffusers-dtypes``).

A watcher stops a run whose anonymous RSS passes ``--rss-limit`` GiB (default 22; the pages
of a memory-mapped checkpoint also count in RSS, but the kernel can drop those) or when the
machine's available memory falls under 1 GiB, and says at which stage; a run the kernel
kills (-9) is reported as killed for memory at its stage. diffusers is measured as it is
installed: without ``accelerate`` its ``from_pretrained`` first builds each model with random
values (the script says which it found). The stages after a failure then
run in a fresh process, on the outputs saved so far or, where there are none, on random
inputs of the right shape (marked ``*``). Usage::

    GLOG_v=3 python benchmarks/bench_fullsize.py [--blocks full|small] [--folder DIR] [--keep]
        [--diffusers-dtypes [float32] [bfloat16]] [--backbone-option compute_dtype=int8]

``--blocks small`` writes the same layout at the published widths with fewer blocks: the
transformer with 1 dual + 1 single block (24 heads x 128; refiner, embedders and RoPE as
published), LLaMA-3 with 3 layers (full width and vocabulary), CLIP-L and the VAE whole:
5.3 GB, a "real width" checkpoint for quick checks. ``--write-only --keep`` writes one,
checks it and keeps it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 2**30
SHARD_BYTES = 5 * 10**9  # save_pretrained's default max_shard_size, "5GB"
BLOCK = 8_388_593  # elements of the pre-drawn random block (prime, so offsets spread)
STD = 0.02
ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4}
NAMES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32"}

LLAMA = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
             intermediate_size=14336, vocab_size=128320, rms_norm_eps=1e-5, rope_theta=500000.0,
             max_position_embeddings=8192, bos_token_id=128000, eos_token_id=128001)
CLIP = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            vocab_size=49408, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu",
            bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
SMALL = {"transformer": dict(num_layers=1, num_single_layers=1), "text_encoder": dict(num_hidden_layers=3)}
SCHEDULER = dict(shift=7.0)

# LLaMA-3's special tokens at their ids; the others in 128002-128255 are reserved tokens.
LLAMA_SPECIALS = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>", 128006: "<|start_header_id|>",
                  128007: "<|end_header_id|>", 128009: "<|eot_id|>"}
LLAMA_PAD = "<pad>"  # at 128256, after LLaMA-3's 128256 tokens
CLIP_SPECIALS = {49406: "<|startoftext|>", 49407: "<|endoftext|>"}
CROP_START = 95  # diffusers' default template's tokens before the prompt, with LLaMA-3's tokenizer

STAGES = ["load encoder", "encode", "load backbone", "denoise", "load autoencoder", "decode"]
GROUPS = [STAGES[0:2], STAGES[2:4], STAGES[4:6]]
DEFAULT_PROMPT = "a red cat walks on the grass"


@dataclass(frozen=True)
class Component:
    subfolder: str
    stem: str  # weight files: STEM.safetensors, or STEM-0000i-of-0000n.safetensors and an index
    dtype: str  # the stored dtype of the published checkpoint, as safetensors names it
    library: str
    cls: str


COMPONENTS = [
    Component("transformer", "diffusion_pytorch_model", "BF16", "diffusers", "HunyuanVideoTransformer3DModel"),
    Component("text_encoder", "model", "F16", "transformers", "LlamaModel"),
    Component("text_encoder_2", "model", "F16", "transformers", "CLIPTextModel"),
    Component("vae", "diffusion_pytorch_model", "F32", "diffusers", "AutoencoderKLHunyuanVideo"),
]


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    ones: bool  # a norm's weight: written as 1, everything else random

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


# --- the checkpoint ------------------------------------------------------------------------


def meta_models(blocks: str) -> dict[str, Any]:
    """The four models on the ``meta`` device: names, shapes and configs, no memory."""
    import torch
    from diffusers import AutoencoderKLHunyuanVideo, HunyuanVideoTransformer3DModel
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    small = blocks == "small"
    llama = LlamaConfig(**{**LLAMA, **(SMALL["text_encoder"] if small else {})})
    clip = CLIPTextConfig(**CLIP)
    for config, cls in ((llama, "LlamaModel"), (clip, "CLIPTextModel")):
        config.architectures = [cls]
        config.dtype = "float16"
    with torch.device("meta"):
        return {
            "transformer": HunyuanVideoTransformer3DModel(**(SMALL["transformer"] if small else {})),
            "text_encoder": LlamaModel(llama),
            "text_encoder_2": CLIPTextModel(clip),
            "vae": AutoencoderKLHunyuanVideo(),
        }


def tensors(model: Any) -> list[Tensor]:
    """The model's state dict, in its order; a weight whose module is a norm is marked."""
    found = []
    for name, value in model.state_dict().items():
        owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        found.append(Tensor(name, tuple(value.shape), name.endswith("weight")
                            and type(owner).__name__.endswith("Norm")))
    return found


def shards(component: Component, items: list[Tensor]) -> list[tuple[str, list[Tensor]]]:
    """Split as ``save_pretrained`` does: in state-dict order, a new shard when the next
    tensor would take this one past 5 GB; file names as transformers and diffusers write them."""
    groups: list[list[Tensor]] = [[]]
    size = 0
    for tensor in items:
        nbytes = tensor.numel * ITEMSIZE[component.dtype]
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(tensor)
        size += nbytes
    if len(groups) == 1:
        return [(f"{component.stem}.safetensors", groups[0])]
    return [(f"{component.stem}-{i + 1:05d}-of-{len(groups):05d}.safetensors", group)
            for i, group in enumerate(groups)]


def header(items: list[Tensor], dtype: str) -> bytes:
    """A safetensors header: 8-byte little-endian length, then JSON padded with spaces to 8 bytes."""
    entries: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for tensor in items:
        end = offset + tensor.numel * ITEMSIZE[dtype]
        entries[tensor.name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def file_bytes(items: list[Tensor], dtype: str) -> int:
    return len(header(items, dtype)) + sum(t.numel for t in items) * ITEMSIZE[dtype]


class Values:
    """One pre-drawn block of normal x 0.02 per dtype; a tensor's bytes are the block's from
    an offset given by its name, wrapping around: finite, varied, and cheap to write."""

    def __init__(self, seed: int = 0) -> None:
        import numpy as np
        import torch

        normal = torch.randn(BLOCK, generator=torch.Generator().manual_seed(seed)) * STD
        self.random = {"F32": normal.numpy().tobytes(), "F16": normal.half().numpy().tobytes(),
                       "BF16": normal.bfloat16().view(torch.int16).numpy().tobytes()}
        self.one = {"F32": np.float32(1).tobytes(), "F16": np.float16(1).tobytes(),
                    "BF16": struct.pack("<H", 0x3F80)}

    def write(self, file: Any, tensor: Tensor, dtype: str) -> None:
        if tensor.ones:
            file.write(self.one[dtype] * tensor.numel)
            return
        block, size = memoryview(self.random[dtype]), ITEMSIZE[dtype]
        start, left = zlib.crc32(tensor.name.encode()) % BLOCK, tensor.numel
        while left:
            take = min(left, BLOCK - start)
            file.write(block[start * size:(start + take) * size])
            left -= take
            start = 0


def drop_cache(path: Path) -> None:
    """Write the file's dirty pages and drop its pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_component(folder: Path, component: Component, model: Any, values: Values) -> None:
    out = folder / component.subfolder
    out.mkdir(parents=True)
    files = shards(component, tensors(model))
    total = 0
    for number, (name, items) in enumerate(files, 1):
        start = time.perf_counter()
        with open(out / name, "wb") as file:
            file.write(header(items, component.dtype))
            for tensor in items:
                values.write(file, tensor, component.dtype)
        drop_cache(out / name)  # so that writing 42 GB does not push everyone's files out of the cache
        size = (out / name).stat().st_size
        total += sum(t.numel for t in items) * ITEMSIZE[component.dtype]
        seconds = time.perf_counter() - start
        print(f"  {component.subfolder}/{name}: {size / 1e9:.2f} GB {NAMES[component.dtype]}, "
              f"{len(items)} tensors, {seconds:.1f} s ({size / 1e6 / max(seconds, 1e-9):.0f} MB/s) "
              f"[{number}/{len(files)}]", flush=True)
    if len(files) > 1:
        index = {"metadata": {"total_size": total},
                 "weight_map": {t.name: name for name, items in files for t in items}}
        (out / f"{component.stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    if component.library == "diffusers":
        model.save_config(out)
    else:
        model.config.save_pretrained(out)


def llama_tokenizer() -> Any:
    """LLaMA-3's pre-tokenizer pattern and a byte-level BPE trained here on diffusers' prompt
    template, so that the template's words are single tokens as in LLaMA-3 (95 before the
    prompt); LLaMA-3's special tokens at LLaMA-3's ids, filler tokens in between."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    template = DEFAULT_PROMPT_TEMPLATE["template"]
    corpus = [template, *(template.format(p) for p in (DEFAULT_PROMPT, "A cat walks on the grass, realistic"))] * 20 + [
        "A dog runs in the snow at night; the camera pans slowly left over a city street, in 4K."] * 10
    trainer = trainers.BpeTrainer(vocab_size=4000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizer
    trained.train_from_iterator(corpus, trainer)
    model = json.loads(trained.to_str())["model"]
    vocab = dict(model["vocab"])
    vocab.update({f"<|filler_{i}|>": i for i in range(len(vocab), 128000)})
    reserved = iter(range(256))
    specials = [LLAMA_SPECIALS.get(i) or f"<|reserved_special_token_{next(reserved)}|>" for i in range(128000, 128256)]
    specials.append(LLAMA_PAD)
    vocab.update({token: 128000 + i for i, token in enumerate(specials)})
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    backend.pre_tokenizer = pre_tokenizer
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    bos = LLAMA_SPECIALS[128000]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, 128000)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=LLAMA_SPECIALS[128001],
                                   pad_token=LLAMA_PAD, model_max_length=131072)


def clip_tokenizer() -> Any:
    """CLIP's byte-level BPE over every byte (no merges), start and end of text at CLIP-L's ids."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols)]
    tokens += [f"<|filler_{i}|>" for i in range(len(tokens), 49406)] + list(CLIP_SPECIALS.values())
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=77)


def write_checkpoint(folder: Path, blocks: str, models: dict[str, Any]) -> None:
    """Write the pipeline folder into ``folder`` (which must not exist yet)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    folder.mkdir()
    values = Values()
    for component in COMPONENTS:
        write_component(folder, component, models[component.subfolder], values)
    FlowMatchEulerDiscreteScheduler(**SCHEDULER).save_config(folder / "scheduler")
    llama_tokenizer().save_pretrained(folder / "tokenizer")
    clip_tokenizer().save_pretrained(folder / "tokenizer_2")
    index = {"_class_name": "HunyuanVideoPipeline", "_diffusers_version": _version("diffusers"),
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "LlamaModel"], "text_encoder_2": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "transformer": ["diffusers", "HunyuanVideoTransformer3DModel"],
             "vae": ["diffusers", "AutoencoderKLHunyuanVideo"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def expected_bytes(models: dict[str, Any]) -> int:
    return sum(file_bytes(items, c.dtype) for c in COMPONENTS
               for _, items in shards(c, tensors(models[c.subfolder])))


# --- checking a folder ---------------------------------------------------------------------


def check_weights(folder: Path, component: Component, model: Any) -> list[str]:
    """Every expected tensor once, with its shape and dtype, in files that open with
    ``safetensors.safe_open``; the index consistent; sampled values finite and varied."""
    import torch
    from safetensors import safe_open

    out = folder / component.subfolder
    expected = {t.name: t for t in tensors(model)}
    files = shards(component, list(expected.values()))
    problems, seen = [], {}
    index_path = out / f"{component.stem}.safetensors.index.json"
    if len(files) > 1:
        if not index_path.is_file():
            return [f"{component.subfolder}: no {index_path.name}"]
        index = json.loads(index_path.read_text())
        wanted = {t.name: name for name, items in files for t in items}
        if index.get("weight_map") != wanted:
            problems.append(f"{component.subfolder}: {index_path.name}'s weight map is not the expected one")
        data = sum(t.numel for t in expected.values()) * ITEMSIZE[component.dtype]
        if index.get("metadata", {}).get("total_size") != data:
            problems.append(f"{component.subfolder}: total_size {index.get('metadata')} is not {data}")
    for name, items in files:
        path = out / name
        if not path.is_file() or path.stat().st_size != file_bytes(items, component.dtype):
            problems.append(f"{component.subfolder}/{name}: missing or not {file_bytes(items, component.dtype)} bytes")
            continue
        with safe_open(path, framework="pt") as file:
            for key in file.keys():  # noqa: SIM118 (safe_open is no dict)
                part = file.get_slice(key)
                tensor = expected.get(key)
                if tensor is None or key in seen:
                    problems.append(f"{component.subfolder}/{name}: unexpected or repeated tensor {key}")
                    continue
                seen[key] = name
                if tuple(part.get_shape()) != tensor.shape or part.get_dtype() != component.dtype:
                    problems.append(f"{component.subfolder}/{name}: {key} is {part.get_dtype()} "
                                    f"{part.get_shape()}, expected {component.dtype} {list(tensor.shape)}")
                    continue
                if key in (items[0].name, items[-1].name) or tensor.ones:
                    sample = part[tuple(slice(0, min(size, 64)) for size in tensor.shape)].float()
                    if not torch.isfinite(sample).all():
                        problems.append(f"{component.subfolder}/{name}: {key} holds non-finite values")
                    elif tensor.ones and not bool((sample == 1).all()):
                        problems.append(f"{component.subfolder}/{name}: norm weight {key} is not 1")
                    elif not tensor.ones and sample.numel() > 1 and bool((sample == sample.flatten()[0]).all()):
                        problems.append(f"{component.subfolder}/{name}: {key} holds one value")
    missing = sorted(set(expected) - set(seen))
    if missing:
        problems.append(f"{component.subfolder}: {len(missing)} tensors missing, e.g. {missing[:3]}")
    return problems


def check_folder(folder: Path, blocks: str, models: dict[str, Any], quick: bool = False) -> list[str]:
    """What is wrong with ``folder`` as the checkpoint this script writes (empty: nothing).

    Weights by header (``quick``: sizes only); configs as diffusers and transformers read
    them; tokenizers through ``AutoTokenizer``; and ``zoo``'s own checks before a build."""
    if not (folder / "model_index.json").is_file():
        return [f"{folder}: no model_index.json"]
    problems: list[str] = []
    for component in COMPONENTS:
        if quick:
            for name, items in shards(component, tensors(models[component.subfolder])):
                path = folder / component.subfolder / name
                if not path.is_file() or path.stat().st_size != file_bytes(items, component.dtype):
                    problems.append(f"{component.subfolder}/{name}: missing or of another size")
        else:
            problems += check_weights(folder, component, models[component.subfolder])
    if problems:
        return problems
    return check_configs(folder, blocks, models)


def check_configs(folder: Path, blocks: str, models: dict[str, Any]) -> list[str]:
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoTransformer3DModel
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from transformers import AutoTokenizer, CLIPTextConfig, LlamaConfig

    problems = []
    for cls, sub in ((HunyuanVideoTransformer3DModel, "transformer"), (AutoencoderKLHunyuanVideo, "vae")):
        config = cls.load_config(folder / sub)
        want = dict(models[sub].config)
        differ = [k for k, v in want.items() if not k.startswith("_") and _plain(config.get(k)) != _plain(v)]
        if config.get("_class_name") != cls.__name__ or differ:
            problems.append(f"{sub}/config.json: class {config.get('_class_name')}, differs in {differ}")
    for cls, sub in ((LlamaConfig, "text_encoder"), (CLIPTextConfig, "text_encoder_2")):
        config = cls.from_pretrained(folder / sub)
        want = models[sub].config
        keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
        differ = [k for k in keys if getattr(config, k) != getattr(want, k)]
        if differ:
            problems.append(f"{sub}/config.json differs in {differ}")
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder / "scheduler")
    if scheduler.config.shift != SCHEDULER["shift"]:
        problems.append(f"scheduler: shift {scheduler.config.shift}")
    llama = AutoTokenizer.from_pretrained(folder / "tokenizer")
    template = DEFAULT_PROMPT_TEMPLATE["template"]
    for token_id, token in LLAMA_SPECIALS.items():
        if llama.convert_tokens_to_ids(token) != token_id:
            problems.append(f"tokenizer: {token} is not id {token_id}")
    crop = len(llama(template)["input_ids"]) - 2  # as diffusers counts a template's crop_start
    ids = llama(template.format(DEFAULT_PROMPT), padding="max_length", max_length=256 + CROP_START)["input_ids"]
    vocab = models["text_encoder"].config.vocab_size
    if crop != CROP_START or max(ids) >= vocab or llama.pad_token_id is None:
        problems.append(f"tokenizer: template crop {crop} (want {CROP_START}), largest id {max(ids)} "
                        f"(vocabulary {vocab}), pad {llama.pad_token_id}")
    clip = AutoTokenizer.from_pretrained(folder / "tokenizer_2")
    ids = clip(DEFAULT_PROMPT, padding="max_length", max_length=77)["input_ids"]
    if ids[0] != 49406 or 49407 not in ids or max(ids) >= CLIP["vocab_size"]:
        problems.append(f"tokenizer_2: ids {ids[:4]}... do not start with 49406 and hold 49407")
    try:
        from zoo.assembly import plan
        from zoo.pretrained import spec_from_folder

        plan(spec_from_folder(folder))
    except Exception as exc:  # noqa: BLE001 (any refusal is the finding)
        problems.append(f"zoo's checks refuse the folder: {type(exc).__name__}: {exc}")
    return problems


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def partial_prefix(folder: Path) -> str:
    return f".{folder.name}.partial-"


def remove_stale_partials(folder: Path) -> None:
    """Half-written folders of runs that are no longer alive (their pid is in the name)."""
    if not folder.parent.is_dir():
        return
    for stale in folder.parent.glob(partial_prefix(folder) + "*"):
        try:
            os.kill(int(stale.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            print(f"removing {stale}, left half-written by an interrupted run")
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass


def ensure_checkpoint(folder: Path, blocks: str, models: dict[str, Any]) -> bool:
    """Reuse a complete folder or write one; True when written now."""
    remove_stale_partials(folder)
    if folder.exists():
        problems = check_folder(folder, blocks, models, quick=True)
        if problems:
            raise SystemExit(f"bench_fullsize: {folder} exists but is not a complete {blocks} checkpoint of this "
                             f"script ({problems[0]}); delete it or pass another --folder")
        print(f"checkpoint: reusing {folder}")
        return False
    need = expected_bytes(models)
    folder.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder.parent).free
    print(f"disk: {free / 1e9:.1f} GB free on {folder.parent}; the {blocks} checkpoint needs {need / 1e9:.1f} GB")
    if free < need + 2 * 10**9:
        raise SystemExit(f"bench_fullsize: not enough disk: {folder.parent} has {free / 1e9:.1f} GB free, the "
                         f"{blocks} checkpoint needs {need / 1e9:.1f} GB plus a 2 GB margin; free space or "
                         f"pass --folder on a larger disk")
    staging = folder.parent / f"{partial_prefix(folder)}{os.getpid()}"
    start = time.perf_counter()
    try:
        write_checkpoint(staging, blocks, models)
        problems = check_folder(staging, blocks, models)
        if problems:
            raise SystemExit("bench_fullsize: the written checkpoint fails its checks:\n  " + "\n  ".join(problems))
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"checkpoint: wrote and checked {folder} ({need / 1e9:.1f} GB) in {time.perf_counter() - start:.0f} s")
    return True


def describe_checkpoint(models: dict[str, Any]) -> str:
    parts = []
    for c in COMPONENTS:
        files = shards(c, tensors(models[c.subfolder]))
        size = sum(file_bytes(items, c.dtype) for _, items in files)
        parts.append(f"{c.subfolder} {size / 1e9:.2f} GB {NAMES[c.dtype]} in {len(files)} file(s)")
    return "; ".join(parts)


# --- running and watching a process ---------------------------------------------------------


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of a process, in bytes (empty once it is gone)."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    values[key] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def proc_read_bytes(pid: int | str = "self") -> int | None:
    """Bytes the process made the kernel fetch from storage (``/proc/PID/io`` read_bytes)."""
    try:
        with open(f"/proc/{pid}/io") as io:
            for line in io:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def mem_available() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Run:
    returncode: int
    seconds: float
    ru_maxrss: int  # bytes, from wait4
    sampled_peak: int  # bytes, the watcher's highest VmRSS sample
    read_bytes: int | None  # the watcher's last sample of /proc/PID/io
    stopped: str | None  # why the watcher stopped it
    log: Path
    ended: float  # time.time() at its end

    @property
    def memory_failure(self) -> str | None:
        if self.stopped:
            return self.stopped
        if self.returncode == -signal.SIGKILL:
            return "killed for memory (SIGKILL, the kernel's OOM killer)"
        return None

    @property
    def failure(self) -> str:
        if self.memory_failure:
            return self.memory_failure
        if self.returncode < 0:
            return f"killed by {signal.Signals(-self.returncode).name} from outside"
        return f"exit status {self.returncode}"

    def tail(self, lines: int = 6) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines() if self.log.is_file() else []
        return "\n".join("    " + line for line in text[-lines:])


def run_watched(command: list[str], log: Path, rss_limit: int, env: dict[str, str]) -> Run:
    """Run ``command``, sampling its memory every 50 ms; stop it when its anonymous RSS passes
    ``rss_limit`` bytes or the machine has under 1 GiB available. (Anonymous: the pages of a
    memory-mapped checkpoint also count in RSS, but the kernel can drop those when it needs the
    memory; the anonymous ones it can only free by killing.)"""
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    peak, read_bytes, stopped = 0, None, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        memory = proc_status(proc.pid)
        rss, anonymous = memory.get("VmRSS", 0), memory.get("RssAnon", 0)
        peak = max(peak, rss)
        read_bytes = proc_read_bytes(proc.pid) or read_bytes
        available = mem_available()
        if stopped is None and (anonymous > rss_limit or available < GIB):
            stopped = (f"stopped by the watcher at {anonymous / GIB:.1f} GiB anonymous RSS "
                       f"({rss / GIB:.1f} GiB RSS)")
            if available < GIB:
                stopped += f", the machine down to {available / GIB:.2f} GiB available"
            os.kill(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(proc.returncode, time.perf_counter() - start, usage.ru_maxrss * 1024, peak, read_bytes, stopped, log,
               time.time())


def child_env() -> dict[str, str]:
    return {**os.environ, "GLOG_v": "3", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1"}


def cold(folder: Path, warm: bool) -> None:
    if not warm:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                drop_cache(path)


# --- ours -----------------------------------------------------------------------------------


def zoo_command() -> list[str]:
    script = Path(sys.executable).with_name("zoo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "zoo.cli"]


def generate_options() -> set[str]:
    """The options ``zoo generate`` has (``--stats`` and ``--memory`` came later than the rest)."""
    done = subprocess.run([*zoo_command(), "generate", "--help"], capture_output=True, text=True, env=child_env(),
                          check=False)
    return {word.strip("[],") for word in done.stdout.split() if word.startswith(("--", "[--"))}


def parse_stats(path: Path) -> dict[str, Any]:
    """``zoo generate --stats``'s JSON: ``{"stages": [{"name", "seconds", "peak_rss_bytes",
    "read_bytes"}, ...], "peak_rss_bytes"}``; a field it lacks is None."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
        raise ValueError(f"{path}: expected an object with a 'stages' list, got {str(data)[:200]}")
    stages = []
    for stage in data["stages"]:
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str):
            raise ValueError(f"{path}: a stage without a name: {stage!r}")
        stages.append({"name": stage["name"], **{key: _number(stage.get(key)) for key in
                                                  ("seconds", "peak_rss_bytes", "read_bytes")}})
    return {"stages": stages, "peak_rss_bytes": _number(data.get("peak_rss_bytes")), "memory": data.get("memory")}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class Result:
    """One contender: its stages (name -> figures) and its process(es)."""

    label: str
    stages: dict[str, dict[str, Any]]
    runs: list[Run]
    failures: list[str]
    notes: list[str]
    peak_reported: float | None = None


def run_ours(folder: Path, work: Path, args: argparse.Namespace) -> Result:
    if args.ours_stats:
        stats = parse_stats(Path(args.ours_stats))
        return Result("ours", {s["name"]: s for s in stats["stages"]}, [], [],
                      [f"ours: figures from {args.ours_stats}, not run now; memory policy {stats['memory']}"],
                      stats["peak_rss_bytes"])
    options = generate_options()
    command = [*zoo_command(), "generate", args.prompt, "--model", str(folder), "--height", str(args.height),
               "--width", str(args.width), "--frames", str(args.frames), "--steps", str(args.steps),
               "--out", str(work / "ours.mp4")]
    for option in args.backbone_option:
        command += ["--backbone-option", option]
    notes, stats_path = [], work / "ours-stats.json"
    if "--stats" in options:
        command += ["--stats", str(stats_path)]
    else:
        notes.append("zoo generate has no --stats: stage figures from its printed lines only")
    if "--memory" in options:
        command += ["--memory", args.memory]
    else:
        notes.append(f"zoo generate has no --memory yet: run without --memory {args.memory}")
    print("ours: " + " ".join(_quote(c) for c in command), flush=True)
    cold(folder, args.warm)
    run = run_watched(command, work / "ours.log", int(args.rss_limit * GIB), child_env())
    policy, printed = read_ours_log(run.log)
    stages, failures, peak = printed, [], None
    if stats_path.is_file():
        stats = parse_stats(stats_path)
        stages = {s["name"]: s for s in stats["stages"]}
        peak = stats["peak_rss_bytes"]
        policy = stats.get("memory") or policy
    if policy:
        notes.append(f"ours: memory policy {policy}")
    if run.returncode != 0:
        reason = run.failure
        order = OURS_ORDER.get(policy or "", STAGES)
        current = next((name for name in order if name not in stages), None)
        if current:
            stages[current] = {"name": current, "failed": reason, "seconds": run.seconds - sum(
                s["seconds"] or 0 for s in stages.values())}
        failures.append(f"ours: {reason} at stage {current!r}" + ("" if run.memory_failure else "\n" + run.tail()))
    return Result("ours", stages, [run], failures, notes, peak)


# The order of ours' stages under each memory policy (zoo.residency): "fast" builds all first.
OURS_ORDER = {"low": STAGES, "fast": ["load encoder", "load backbone", "load autoencoder", "encode", "denoise",
                                      "decode"]}
STAGE_LINE = re.compile(r"^(?P<name>[a-z][a-z ]*): (?P<seconds>[\d.]+) s, peak RSS (?P<peak>[\d.]+) GiB, "
                        r"read (?P<read>[\d.]+) GiB$")


def read_ours_log(log: Path) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """The memory policy and the stages ``zoo generate`` printed as they ended (it prints each
    on stderr), so that a run stopped halfway still tells where it got to."""
    policy, stages = None, {}
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        found = re.search(r"; memory: (\w+) ", line)
        if found:
            policy = found.group(1)
        match = STAGE_LINE.match(line.strip())
        if match:
            stages[match["name"]] = {"name": match["name"], "seconds": float(match["seconds"]),
                                     "peak_rss_bytes": float(match["peak"]) * GIB,
                                     "read_bytes": float(match["read"]) * GIB}
    return policy, stages


def _quote(word: str) -> str:
    return f'"{word}"' if " " in word else word


# --- diffusers --------------------------------------------------------------------------------


def diffusers_child(spec: dict[str, Any]) -> None:
    """Runs in the child: the stage groups from ``spec["start"]`` on, each stage's figures appended
    to ``spec["progress"]`` as JSON lines."""
    import gc
    import threading

    progress = open(spec["progress"], "a", buffering=1)  # noqa: SIM115 (open for the child's life)
    work = Path(spec["work"])

    def note(**event: Any) -> None:
        progress.write(json.dumps(event) + "\n")

    class Sampler(threading.Thread):
        def __init__(self) -> None:
            super().__init__(daemon=True)
            self.peak = 0

        def run(self) -> None:
            while True:
                self.peak = max(self.peak, proc_status().get("VmRSS", 0))
                time.sleep(0.01)

    sampler = Sampler()
    sampler.start()

    @contextlib.contextmanager
    def stage(name: str, inputs: str = "") -> Iterator[None]:
        note(event="start", stage=name, time=time.time())
        hwm, read = proc_status().get("VmHWM", 0), proc_read_bytes() or 0
        sampler.peak = proc_status().get("VmRSS", 0)
        start = time.perf_counter()
        yield
        gc.collect()
        seconds = time.perf_counter() - start
        now = proc_status()
        # A new high-water mark was reached in this stage: it is exact. Else the sampled peak.
        peak = now["VmHWM"] if now["VmHWM"] > hwm else max(sampler.peak, now["VmRSS"])
        note(event="end", stage=name, seconds=seconds, peak_rss_bytes=peak,
             read_bytes=(proc_read_bytes() or 0) - read, rss_after=now["VmRSS"], inputs=inputs)

    with stage("startup"):
        import numpy as np
        import torch
        from diffusers import (
            AutoencoderKLHunyuanVideo,
            FlowMatchEulerDiscreteScheduler,
            HunyuanVideoPipeline,
            HunyuanVideoTransformer3DModel,
        )
        from transformers import AutoTokenizer, CLIPTextModel, LlamaModel

    folder, dtype = Path(spec["folder"]), getattr(torch, spec["dtype"])
    rng = np.random.default_rng(0)

    def saved(name: str, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
        path = work / f"{spec['dtype']}-{name}.npy"
        if path.is_file():
            return np.load(path), "saved"
        return rng.standard_normal(shape).astype(np.float32), "random"

    def pipeline(**parts: Any) -> Any:
        names = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "transformer", "vae", "scheduler")
        pipe = HunyuanVideoPipeline(**{name: parts.get(name) for name in names})
        pipe.set_progress_bar_config(disable=True)
        return pipe

    torch.manual_seed(0)
    with torch.no_grad():
        if spec["start"] <= 0:
            with stage("load encoder"):
                tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
                tokenizer_2 = AutoTokenizer.from_pretrained(folder / "tokenizer_2")
                llama = LlamaModel.from_pretrained(folder / "text_encoder", dtype=dtype)
                clip = CLIPTextModel.from_pretrained(folder / "text_encoder_2", dtype=dtype)
            with stage("encode"):
                pipe = pipeline(text_encoder=llama, tokenizer=tokenizer, text_encoder_2=clip, tokenizer_2=tokenizer_2)
                embeds, pooled, mask = pipe.encode_prompt(spec["prompt"], device="cpu")
                for name, value in (("embeds", embeds), ("pooled", pooled), ("mask", mask)):
                    np.save(work / f"{spec['dtype']}-{name}.npy", value.float().numpy())
                del pipe, llama, clip
        if spec["start"] <= 1:
            embeds, inputs = saved("embeds", (1, 256, 4096))
            pooled, _ = saved("pooled", (1, 768))
            mask, _ = saved("mask", (1, 256))
            if inputs == "random":
                mask = (np.arange(256) < 16).astype(np.float32)[None]
            with stage("load backbone", inputs):
                transformer = HunyuanVideoTransformer3DModel.from_pretrained(folder / "transformer", torch_dtype=dtype)
                scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder / "scheduler")
            with stage("denoise", inputs):
                pipe = pipeline(transformer=transformer, scheduler=scheduler)
                latents = pipe(prompt_embeds=torch.from_numpy(embeds), pooled_prompt_embeds=torch.from_numpy(pooled),
                               prompt_attention_mask=torch.from_numpy(mask), height=spec["height"],
                               width=spec["width"], num_frames=spec["frames"], num_inference_steps=spec["steps"],
                               guidance_scale=6.0, generator=torch.Generator().manual_seed(0),
                               output_type="latent").frames
                np.save(work / f"{spec['dtype']}-latents.npy", latents.float().numpy())
                del pipe, transformer
        shape = (1, 16, (spec["frames"] - 1) // 4 + 1, spec["height"] // 8, spec["width"] // 8)
        latents, inputs = saved("latents", shape)
        with stage("load autoencoder", inputs):
            vae = AutoencoderKLHunyuanVideo.from_pretrained(folder / "vae", torch_dtype=dtype)
        with stage("decode", inputs):
            video = vae.decode(torch.from_numpy(latents).to(dtype) / vae.config.scaling_factor).sample
            assert video.shape[2] == spec["frames"] and torch.isfinite(video).all()


def read_progress(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The stages a child finished, and the one it had started and not finished (name, start time)."""
    done, current = [], (None, None)
    if path.is_file():
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "start":
                current = (event["stage"], event["time"])
            else:
                done.append({"name": event["stage"], **{k: v for k, v in event.items() if k not in ("event", "stage")}})
                current = (None, None)
    return done, current


def run_diffusers(folder: Path, work: Path, dtype: str, args: argparse.Namespace) -> Result:
    label = f"diffusers {'fp32' if dtype == 'float32' else 'bf16' if dtype == 'bfloat16' else dtype}"
    result = Result(label, {}, [], [], [])
    start = 0
    while start < len(GROUPS):
        progress = work / f"{dtype}-progress-{start}.jsonl"
        spec = dict(folder=str(folder), dtype=dtype, start=start, progress=str(progress), work=str(work),
                    prompt=args.prompt, height=args.height, width=args.width, frames=args.frames, steps=args.steps)
        command = [sys.executable, __file__, "--diffusers-child", json.dumps(spec)]
        print(f"{label}: stages from {GROUPS[start][0]!r}, fresh process", flush=True)
        cold(folder, args.warm)
        run = run_watched(command, work / f"{dtype}-{start}.log", int(args.rss_limit * GIB), child_env())
        result.runs.append(run)
        done, (current, started) = read_progress(progress)
        for stage in done:
            stage["process"] = len(result.runs)
            if stage["name"] == "startup" and "startup" in result.stages:
                continue
            result.stages[stage["name"]] = stage
        if run.returncode == 0:
            break
        reason = run.failure
        where = current or "(after the last stage)"
        result.failures.append(f"{label}: {reason} at stage {where!r}" + ("" if run.memory_failure else
                                                                            "\n" + run.tail()))
        if current in STAGES:
            result.stages[current] = {"name": current, "failed": reason, "seconds": run.ended - started}
        if args.no_resume or current not in STAGES:
            break
        start = next(i for i, group in enumerate(GROUPS) if current in group) + 1
    return result


# --- report ---------------------------------------------------------------------------------


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f} GiB"


def gb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:.2f} GB"


def cell(stage: dict[str, Any] | None) -> str:
    if stage is None:
        return "-"
    if "failed" in stage:
        return f"**{stage['failed'].replace('stopped by the watcher', 'stopped')} after {stage['seconds']:.0f} s**"
    mark = "*" if stage.get("inputs") == "random" else ""
    return f"{stage['seconds']:.1f} s{mark}, {gib(stage.get('peak_rss_bytes'))}, {gb(stage.get('read_bytes'))} read"


def ratio(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> str:
    if not ours or not theirs or "failed" in ours or "failed" in theirs:
        return "-"
    parts = []
    for key in ("seconds", "peak_rss_bytes"):
        a, b = ours.get(key), theirs.get(key)
        parts.append(f"{a / b:.2f}" if a is not None and b else "-")
    return " / ".join(parts)


def table(results: list[Result]) -> str:
    ours = next((r for r in results if r.label == "ours"), None)
    others = [r for r in results if r is not ours]
    names = ["startup", *STAGES]
    for result in results:
        names += [n for n in result.stages if n not in names]
    header = ["stage", *(r.label for r in results)]
    if ours:
        header += [f"ours / {r.label} (time / peak)" for r in others]
    rows = [header, ["---"] * len(header)]
    for name in names:
        row = [name, *(cell(r.stages.get(name)) for r in results)]
        if ours:
            row += [ratio(ours.stages.get(name), r.stages.get(name)) for r in others]
        rows.append(row)
    total = ["whole process"]
    for result in results:
        if not result.runs:
            total.append(f"peak {gib(result.peak_reported)} (reported)")
            continue
        seconds = sum(run.seconds for run in result.runs)
        maxrss = max(run.ru_maxrss for run in result.runs)
        reported = f", reported {gib(result.peak_reported)}" if result.peak_reported else ""
        processes = f" in {len(result.runs)} processes" if len(result.runs) > 1 else ""
        total.append(f"{seconds:.1f} s{processes}, peak {gib(maxrss)} (ru_maxrss{reported})")
    if ours:
        total += ["-"] * len(others)
    rows.append(total)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def machine() -> str:
    flags: set[str] = set()
    model = "?"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return (f"machine: {os.cpu_count()} cores ({model}; {have}), {total / GIB:.1f} GiB memory, "
            f"{mem_available() / GIB:.1f} GiB available; {load()}")


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("mindspore", "torch", "diffusers", "transformers", "accelerate"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} absent")
    return "packages: " + ", ".join(found) + (
        "" if "accelerate absent" not in found[-1] else " (without accelerate, diffusers' from_pretrained "
        "builds each model with random values before loading: slower, and a peak of two copies)")


def load() -> str:
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


# --- main -------------------------------------------------------------------------------------


def default_folder(blocks: str) -> Path:
    root = os.environ.get("HUNYUAN_ZOO_CACHE") or tempfile.gettempdir()
    return Path(root) / f"hunyuanvideo-random-{blocks}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", choices=("full", "small"), default="full",
                        help="full: the published 13B + 8B; small: the same widths, 1+1 transformer blocks, "
                             "3 LLaMA layers (default: %(default)s)")
    parser.add_argument("--folder", type=Path, help="the checkpoint folder, reused when complete (default: "
                        "$HUNYUAN_ZOO_CACHE or the temporary directory, /hunyuanvideo-random-BLOCKS)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint folder afterwards")
    parser.add_argument("--write-only", action="store_true", help="write and check the checkpoint, run nothing")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--memory", default="auto", choices=("auto", "low", "fast"), help="ours' --memory")
    parser.add_argument("--diffusers-dtypes", nargs="*", default=["float32", "bfloat16"],
                        choices=("float32", "bfloat16", "float16"), help="one diffusers row each; none: skip")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--backbone-option", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to ours' zoo generate (repeatable), e.g. compute_dtype=int8")
    parser.add_argument("--ours-stats", help="a stats file of an earlier `zoo generate --stats` to report "
                        "instead of running ours")
    parser.add_argument("--rss-limit", type=float, default=22.0,
                        help="GiB of anonymous RSS above which a run is stopped (default: %(default)s)")
    parser.add_argument("--no-resume", action="store_true", help="after a failed stage, do not run the "
                        "later stages in a fresh process")
    parser.add_argument("--warm", action="store_true", help="do not drop the checkpoint from the page cache "
                        "before each run")
    parser.add_argument("--diffusers-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.diffusers_child:
        diffusers_child(json.loads(args.diffusers_child))
        return

    print("command: GLOG_v=3 python " + " ".join(_quote(a) for a in sys.argv))
    print(machine() + " at start")
    print(versions(), flush=True)
    folder = args.folder or default_folder(args.blocks)
    models = meta_models(args.blocks)
    print(f"checkpoint ({args.blocks}): {describe_checkpoint(models)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # so that cleanup runs
    ensure_checkpoint(folder, args.blocks, models)
    try:
        if args.write_only:
            return
        results: list[Result] = []
        with tempfile.TemporaryDirectory(prefix="bench_fullsize.") as temp:
            work = Path(temp)
            if not args.skip_ours:
                results.append(run_ours(folder, work, args))
            for dtype in args.diffusers_dtypes:
                results.append(run_diffusers(folder, work, dtype, args))
        print()
        print(f"{args.height}x{args.width}, {args.frames} frames, {args.steps} steps, prompt {args.prompt!r}; "
              f"each cell: wall time, peak RSS in the stage, bytes read from storage in the stage"
              f"{'' if args.warm else ' (page cache dropped before each process)'}")
        print(table(results))
        for result in results:
            for run in result.runs:
                print(f"{result.label}: process {result.runs.index(run) + 1}: exit {run.returncode}, "
                      f"{run.seconds:.1f} s, ru_maxrss {gib(run.ru_maxrss)}, sampled peak {gib(run.sampled_peak)}, "
                      f"read {gb(run.read_bytes)}")
            for line in result.notes + result.failures:
                print(f"{line}")
        if any(s.get("inputs") == "random" for r in results for s in r.stages.values()):
            print("* in a fresh process after a failed stage, on random inputs of the right shape")
        print(machine() + " at end")
    finally:
        if not args.keep and folder.exists():
            shutil.rmtree(folder)
            print(f"deleted {folder} (--keep keeps it)")


if __name__ == "__main__":
    main()
