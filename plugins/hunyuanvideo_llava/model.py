"""transformers' ``LlavaForConditionalGeneration`` in MindSpore, less its language-model head:
a CLIP vision tower, the multi-modal projector and LLaMA.

Parameter names are those transformers 5 saves (``model.vision_tower.…``,
``model.multi_modal_projector.…``, ``model.language_model.…``); the older names
(``vision_tower.vision_model.…``, ``language_model.model.…``) are mapped at load by
``plugins.common.keymaps``. The vision tower's encoder layers are the CLIP text model's
(``plugins.hunyuanvideo_text.clip``), run without a mask.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, mint, nn, ops
from mindspore.common.initializer import initializer
from transformers import CLIPVisionConfig, LlavaConfig

from plugins.common.layers import LayerNorm, Linear
from plugins.common.precision import computable
from plugins.hunyuanvideo_text.clip import ACTIVATIONS, CLIPEncoder
from plugins.hunyuanvideo_text.layers import Embedding
from plugins.hunyuanvideo_text.llama import LlamaModel


def patches(pixel_values: np.ndarray, size: int) -> np.ndarray:
    """Images ``[B, C, H, W]`` as their non-overlapping ``size`` x ``size`` patches, row by row,
    each flattened channel-major: ``[B, H/size * W/size, C * size * size]``, the operand of a
    stride-``size`` convolution written as a matrix product."""
    batch, channels, height, width = pixel_values.shape
    grid = pixel_values[:, :, :height - height % size, :width - width % size]
    grid = grid.reshape(batch, channels, height // size, size, width // size, size)
    return np.ascontiguousarray(grid.transpose(0, 2, 4, 1, 3, 5)).reshape(batch, -1, channels * size * size)


class PatchEmbedding(nn.Cell):
    """A bias-free stride-``size`` convolution (``weight [out, C, size, size]``, PyTorch's layout)
    applied to the rows of ``patches``."""

    def __init__(self, channels: int, width: int, size: int) -> None:
        super().__init__()
        self.weight = Parameter(initializer("normal", (width, channels, size, size), ms.float32))
        self.matmul = ops.MatMul(transpose_b=True)

    def construct(self, rows: Tensor) -> Tensor:
        weight = computable(self.weight, rows.dtype)
        out = self.matmul(rows.reshape(-1, rows.shape[-1]), weight.reshape(weight.shape[0], -1))
        return out.reshape(*rows.shape[:-1], -1)


class CLIPVisionEmbeddings(nn.Cell):
    def __init__(self, config: CLIPVisionConfig) -> None:
        super().__init__()
        width, self.patch_size = config.hidden_size, config.patch_size
        self.class_embedding = Parameter(initializer("normal", (width,), ms.float32))
        self.patch_embedding = PatchEmbedding(config.num_channels, width, config.patch_size)
        count = (config.image_size // config.patch_size) ** 2 + 1
        self.position_embedding = Embedding(count, width)

    def construct(self, rows: Tensor) -> Tensor:
        """Patches ``[B, N, C * p * p]`` to the class token and patch embeddings ``[B, N + 1, D]``."""
        embedded = self.patch_embedding(rows)
        batch, _, width = embedded.shape
        cls = ops.broadcast_to(computable(self.class_embedding, rows.dtype).reshape(1, 1, width), (batch, 1, width))
        tokens = mint.cat([cls, embedded], dim=1)
        positions = Tensor(np.arange(tokens.shape[1], dtype=np.int32)[None])
        return tokens + self.position_embedding(positions).astype(rows.dtype)


class CLIPVisionTransformer(nn.Cell):
    """transformers' ``CLIPVisionModel`` up to its encoder's hidden states (LLaVA reads those,
    not the pooled output, so the final ``post_layernorm`` is not built)."""

    def __init__(self, config: CLIPVisionConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.encoder = CLIPEncoder(config)

    def hidden_states(self, pixel_values: np.ndarray, indices: list[int], dtype: ms.dtype) -> list[Tensor]:
        """transformers' ``hidden_states[i]`` for each of ``indices`` (negative ones count from the
        end): 0 is the normed embeddings, ``i`` the output of layer ``i``; later layers are not run."""
        count = len(self.encoder.layers) + 1
        wanted = [index % count for index in indices]
        rows = Tensor(patches(pixel_values, self.config.patch_size)).astype(dtype)
        x = self.pre_layrnorm(self.embeddings(rows))
        states = [x]
        for layer in self.encoder.layers[:max(wanted)]:
            x = layer(x, None)
            states.append(x)
        return [states[index] for index in wanted]


class LlavaMultiModalProjector(nn.Cell):
    def __init__(self, config: LlavaConfig) -> None:
        super().__init__()
        if config.projector_hidden_act not in ACTIVATIONS:
            raise ValueError(f"LLaVA projector: projector_hidden_act {config.projector_hidden_act!r} is not "
                             f"supported; choose one of {sorted(ACTIVATIONS)}")
        layers = 1 if isinstance(config.vision_feature_layer, int) else len(config.vision_feature_layer)
        width, bias = config.text_config.hidden_size, config.multimodal_projector_bias
        self.linear_1 = Linear(config.vision_config.hidden_size * layers, width, bias)
        self.activation = ACTIVATIONS[config.projector_hidden_act]
        self.linear_2 = Linear(width, width, bias)

    def construct(self, x: Tensor) -> Tensor:
        return self.linear_2(self.activation(self.linear_1(x)))


class LlavaParts(nn.Cell):
    """The three models under transformers' names."""

    def __init__(self, config: LlavaConfig, compute: ms.dtype) -> None:
        super().__init__()
        self.vision_tower = CLIPVisionTransformer(config.vision_config)
        self.multi_modal_projector = LlavaMultiModalProjector(config)
        self.language_model = LlamaModel(config.text_config, compute)


class LlavaModel(nn.Cell):
    """``LlavaForConditionalGeneration`` without ``lm_head``, under ``model``."""

    def __init__(self, config: LlavaConfig, compute: ms.dtype = ms.float32) -> None:
        super().__init__()
        if config.vision_feature_select_strategy not in ("default", "full"):
            raise ValueError(f"LLaVA: vision_feature_select_strategy "
                             f"{config.vision_feature_select_strategy!r} is not supported ('default' or 'full')")
        self.config, self.compute = config, compute
        self.model = LlavaParts(config, compute)

    def image_features(self, pixel_values: np.ndarray) -> Tensor:
        """Normalised images ``[B, C, S, S]`` to their projected features ``[B, N, D]``: the vision
        tower's ``vision_feature_layer`` hidden states (several concatenated), the class token
        dropped by the ``default`` strategy."""
        layer = self.config.vision_feature_layer
        indices = [layer] if isinstance(layer, int) else list(layer)
        states = self.model.vision_tower.hidden_states(pixel_values, indices, self.compute)
        if self.config.vision_feature_select_strategy == "default":
            states = [state[:, 1:] for state in states]
        selected = states[0] if len(states) == 1 else mint.cat(states, dim=-1)
        return self.model.multi_modal_projector(selected)

    def hidden_state(self, input_ids: np.ndarray, image_features: np.ndarray, attention: np.ndarray,
                     positions: np.ndarray, index: int) -> Tensor:
        """The language model's ``hidden_states[index]`` of ``input_ids [B, L]`` whose image
        tokens are replaced by ``image_features [B, N, D]``, in order; ``attention [B, 1, L, L]``
        boolean, ``positions [B, L]``."""
        embeddings = self.model.language_model.embed_tokens(Tensor(input_ids.astype(np.int32))).asnumpy()
        image = input_ids == self.config.image_token_index
        embeddings[image] = image_features.reshape(-1, image_features.shape[-1]).astype(embeddings.dtype)
        return self.model.language_model.from_embeddings(Tensor(embeddings), Tensor(attention), index, positions)
