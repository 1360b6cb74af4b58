"""The CLIP half: ``HunyuanVideoPipeline._get_clip_prompt_embeds`` in MindSpore."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mindspore import Tensor
from mindspore.nn.utils import no_init_parameters
from transformers import CLIPTextConfig, PreTrainedTokenizerBase

from contracts import TextEmbeddings
from plugins.common.checkpoint import Checkpoint
from plugins.common.runtime import apply_matmul_precision, compute_dtype, dispatch_synchronously_on_cpu
from plugins.common.weights import load_weights
from plugins.hunyuanvideo_text.clip import CLIPTextModel, CLIPTextTransformer, pooled_positions
from plugins.hunyuanvideo_text.config import ClipEncoderConfig
from plugins.hunyuanvideo_text.layers import randomize
from plugins.hunyuanvideo_text.loading import resolve
from plugins.hunyuanvideo_text.prompts import prompt_list, tokenize


class ClipTextEncoder:
    """Prompts to CLIP's pooled embedding ``[B, D]``, with its final hidden states
    ``[B, max_sequence_length, D]`` and token mask. As in diffusers the model sees no
    padding mask: the causal mask keeps padding from reaching the end-of-text token."""

    def __init__(self, config: ClipEncoderConfig, tokenizer: PreTrainedTokenizerBase,
                 model_config: CLIPTextConfig, model_folder: Path | None = None) -> None:
        dispatch_synchronously_on_cpu()
        self.config, self.tokenizer, self.model_config = config, tokenizer, model_config
        if config.max_sequence_length > model_config.max_position_embeddings:
            raise ValueError(f"hunyuanvideo-clip: max_sequence_length={config.max_sequence_length} exceeds "
                             f"the model's max_position_embeddings={model_config.max_position_embeddings}")
        if not isinstance(model_config.eos_token_id, int):
            raise ValueError(f"hunyuanvideo-clip: eos_token_id must be one int, "
                             f"got {model_config.eos_token_id!r}")
        compute_dtype(config.compute_dtype)  # refuses a dtype this device cannot compute in
        if model_folder is None:
            self.model = CLIPTextTransformer(model_config)
            randomize(self.model, config.seed, model_config.initializer_range)
        else:  # no random initial values: the checkpoint replaces them all
            prefixed = any(name.startswith("text_model.") for name in Checkpoint(model_folder).records)
            with no_init_parameters():
                self.model = CLIPTextModel(model_config) if prefixed else CLIPTextTransformer(model_config)
            load_weights(self.model, model_folder, "CLIP text encoder", config.weight_dtype, config.stream_weights)
        apply_matmul_precision(config.compute_dtype, self.model, "hunyuanvideo-clip")

    def encode(self, prompts: Sequence[str] | str) -> TextEmbeddings:
        prompts = prompt_list(prompts)
        ids, mask = tokenize(self.tokenizer, prompts, self.config.max_sequence_length,
                             self.model_config.vocab_size, "hunyuanvideo-clip")
        hidden = self.model(Tensor(ids)).asnumpy()
        pooled = hidden[np.arange(len(ids)), pooled_positions(ids, self.model_config.eos_token_id)]
        return TextEmbeddings(hidden_states=hidden, attention_mask=mask, pooled=pooled)


def build(config: ClipEncoderConfig, weights: Path | None) -> ClipTextEncoder:
    """The registered factory: tokenizer, architecture and weights from a pipeline folder."""
    tokenizer, model_config, folder = resolve("hunyuanvideo-clip", config, weights, CLIPTextConfig)
    return ClipTextEncoder(config, tokenizer, model_config, folder)
