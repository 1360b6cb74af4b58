"""transformers' ``CLIPTextModel`` in MindSpore: a causal pre-norm transformer with a final
layer norm. Attribute names equal transformers' module names; checkpoints name the
parameters either ``text_model.…`` (transformers 4) or without that prefix (5).

``CLIPEncoder`` and its layers read only the fields a ``CLIPVisionConfig`` shares, so the
CLIP vision tower (``plugins.hunyuanvideo_llava``) runs on them too, without a mask."""

from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn
from transformers import CLIPTextConfig, CLIPVisionConfig

from plugins.common.layers import LayerNorm, Linear, attention, gelu, gelu_tanh
from plugins.hunyuanvideo_text.layers import Embedding

ACTIVATIONS = {
    "quick_gelu": lambda x: x * (1.702 * x).sigmoid(),
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
}


class CLIPTextEmbeddings(nn.Cell):
    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__()
        self.token_embedding = Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = Embedding(config.max_position_embeddings, config.hidden_size)

    def construct(self, input_ids: Tensor) -> Tensor:
        positions = Tensor(np.arange(input_ids.shape[1], dtype=np.int32)[None])
        return self.token_embedding(input_ids) + self.position_embedding(positions)


class CLIPAttention(nn.Cell):
    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.k_proj = Linear(width, width)
        self.v_proj = Linear(width, width)
        self.q_proj = Linear(width, width)
        self.out_proj = Linear(width, width)

    def _heads(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        return x.reshape(batch, length, self.heads, width // self.heads).swapaxes(1, 2)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, length, width = x.shape
        out = attention(self._heads(self.q_proj(x)), self._heads(self.k_proj(x)),
                        self._heads(self.v_proj(x)), mask)
        return self.out_proj(out.swapaxes(1, 2).reshape(batch, length, width))


class CLIPMLP(nn.Cell):
    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__()
        if config.hidden_act not in ACTIVATIONS:
            raise ValueError(f"CLIP text encoder: hidden_act {config.hidden_act!r} is not supported; "
                             f"choose one of {sorted(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[config.hidden_act]
        self.fc1 = Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = Linear(config.intermediate_size, config.hidden_size)

    def construct(self, x: Tensor) -> Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class CLIPEncoderLayer(nn.Cell):
    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__()
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = LayerNorm(config.hidden_size, config.layer_norm_eps)

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Cell):
    def __init__(self, config: CLIPTextConfig | CLIPVisionConfig) -> None:
        super().__init__()
        self.layers = nn.CellList([CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers)])

    def construct(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class CLIPTextTransformer(nn.Cell):
    """Token ids ``[B, L]`` to the final-layer-normed hidden states ``[B, L, D]``, causally."""

    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = LayerNorm(config.hidden_size, config.layer_norm_eps)

    def construct(self, input_ids: Tensor) -> Tensor:
        length = input_ids.shape[1]
        causal = Tensor(np.tril(np.ones((length, length), dtype=bool))[None, None])
        return self.final_layer_norm(self.encoder(self.embeddings(input_ids), causal))


class CLIPTextModel(nn.Cell):
    """The same transformer under ``text_model``, as transformers 4 saved it."""

    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__()
        self.text_model = CLIPTextTransformer(config)

    def construct(self, input_ids: Tensor) -> Tensor:
        return self.text_model(input_ids)


def pooled_positions(input_ids: np.ndarray, eos_token_id: int | list[int] | None) -> np.ndarray:
    """Where transformers' ``CLIPTextModel`` takes its pooled output, per row: the highest id
    when the config's ``eos_token_id`` is the legacy 2, else the first end-of-text token."""
    if eos_token_id == 2:
        return input_ids.argmax(-1)
    return (input_ids == eos_token_id).argmax(-1)
