"""The LLaMA half: ``HunyuanVideoPipeline._get_llama_prompt_embeds`` in MindSpore."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mindspore import Tensor
from mindspore.nn.utils import no_init_parameters
from transformers import LlamaConfig, PreTrainedTokenizerBase

from contracts import TextEmbeddings
from plugins.common.runtime import apply_matmul_precision, compute_dtype, dispatch_synchronously_on_cpu
from plugins.common.weights import load_weights
from plugins.hunyuanvideo_text.config import LlamaEncoderConfig
from plugins.hunyuanvideo_text.layers import randomize
from plugins.hunyuanvideo_text.llama import LlamaModel
from plugins.hunyuanvideo_text.loading import resolve
from plugins.hunyuanvideo_text.prompts import as_template, crop_start, prompt_list, tokenize


def attention_mask(tokens: np.ndarray) -> np.ndarray:
    """Causal and key-padding mask ``[B, 1, L, L]``. A query with no key to attend to (a pad
    before the first real token) attends to itself, so its output is finite; transformers'
    output there differs, and the mask marks it as padding."""
    length = tokens.shape[1]
    mask = np.tril(np.ones((length, length), dtype=bool))[None] & tokens[:, None, :]
    lonely = ~mask.any(-1)
    mask |= lonely[..., None] & np.eye(length, dtype=bool)[None]
    return mask[:, None]


class LlamaTextEncoder:
    """Prompts to the hidden states ``[B, max_sequence_length, D]`` and mask of the templated
    prompts, exactly as diffusers computes them; ``pooled`` is None."""

    def __init__(self, config: LlamaEncoderConfig, tokenizer: PreTrainedTokenizerBase,
                 model_config: LlamaConfig, model_folder: Path | None = None) -> None:
        dispatch_synchronously_on_cpu()
        self.config, self.tokenizer, self.model_config = config, tokenizer, model_config
        self.index = model_config.num_hidden_layers - config.num_hidden_layers_to_skip
        if self.index < 0:
            raise ValueError(f"hunyuanvideo-llama: num_hidden_layers_to_skip="
                             f"{config.num_hidden_layers_to_skip} needs at least that many layers, "
                             f"the model has {model_config.num_hidden_layers}")
        compute = compute_dtype(config.compute_dtype)
        if model_folder is None:
            self.model = LlamaModel(model_config, compute)
            randomize(self.model, config.seed, model_config.initializer_range)
        else:  # no random initial values: the checkpoint replaces them all
            with no_init_parameters():
                self.model = LlamaModel(model_config, compute)
            load_weights(self.model, model_folder, "LLaMA text encoder", config.weight_dtype,
                         config.stream_weights)
        apply_matmul_precision(config.compute_dtype, self.model, "hunyuanvideo-llama")

    def encode(self, prompts: Sequence[str] | str, prompt_template: dict[str, Any] | str | None = None,
               max_sequence_length: int | None = None) -> TextEmbeddings:
        """``prompt_template`` and ``max_sequence_length`` override the config for this call."""
        prompts = prompt_list(prompts)
        template = self.config.prompt_template if prompt_template is None else as_template(prompt_template)
        if max_sequence_length is None:
            max_sequence_length = self.config.max_sequence_length
        if not isinstance(max_sequence_length, int) or max_sequence_length < 1:
            raise ValueError(f"max_sequence_length: expected a positive int, got {max_sequence_length!r}")
        crop = crop_start(template, self.tokenizer)
        texts = [template.template.format(p) for p in prompts]
        ids, mask = tokenize(self.tokenizer, texts, max_sequence_length + crop,
                             self.model_config.vocab_size, "hunyuanvideo-llama")
        # Attention is causal, so trailing padding (in every prompt) changes no real token: it is
        # not computed, and its hidden states are zeros (diffusers' are unused values there).
        length = int(np.flatnonzero(mask.any(0)).max(initial=0)) + 1
        hidden = self.model(Tensor(ids[:, :length]), Tensor(attention_mask(mask[:, :length])), self.index).asnumpy()
        hidden = np.pad(hidden, ((0, 0), (0, ids.shape[1] - length), (0, 0)))
        return TextEmbeddings(hidden_states=hidden[:, crop:], attention_mask=mask[:, crop:])


def build(config: LlamaEncoderConfig, weights: Path | None) -> LlamaTextEncoder:
    """The registered factory: tokenizer, architecture and weights from a pipeline folder."""
    tokenizer, model_config, folder = resolve("hunyuanvideo-llama", config, weights, LlamaConfig)
    return LlamaTextEncoder(config, tokenizer, model_config, folder)
