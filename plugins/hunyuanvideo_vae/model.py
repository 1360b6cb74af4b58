"""HunyuanVideo's causal 3D VAE (diffusers' ``AutoencoderKLHunyuanVideo``) as an autoencoder component."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn
from mindspore.nn.utils import no_init_parameters

from contracts import ContractError, check_latents, check_video
from plugins.common.runtime import compute_dtype, dispatch_synchronously_on_cpu
from plugins.common.weights import load_weights
from plugins.hunyuanvideo_vae.coders import Decoder3D, Encoder3D
from plugins.hunyuanvideo_vae.config import HunyuanVideoVAEConfig
from plugins.hunyuanvideo_vae.conv import Conv3d
from plugins.hunyuanvideo_vae.matmul_conv import release_scratch
from plugins.hunyuanvideo_vae.tiling import TileSizes, tiled_spatial, tiled_temporal


class AutoencoderKLHunyuanVideo(nn.Cell):
    """The network; its parameter names are the checkpoint's."""

    def __init__(self, config: HunyuanVideoVAEConfig) -> None:
        super().__init__()
        channels = config.latent_channels
        self.latent_channels = channels
        self.encoder = Encoder3D(config)
        self.decoder = Decoder3D(config)
        self.quant_conv = Conv3d(2 * channels, 2 * channels, 1)
        self.post_quant_conv = Conv3d(channels, channels, 1)

    def encode_mean(self, video: Tensor) -> Tensor:
        """The posterior mean (the first half of the moments' channels)."""
        return self.quant_conv(self.encoder(video))[:, :self.latent_channels]

    def construct(self, latents: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(latents))


class HunyuanVideoVAE:
    """``encode(video [B, 3, 4k+1, 8m, 8n]) -> latents [B, C, k+1, m, n]`` (posterior mean,
    unscaled) and ``decode(latents) -> video``, numpy float32 at both ends.

    As in diffusers, a long video is always encoded and decoded in overlapping
    windows of frames (``use_framewise_encoding``/``use_framewise_decoding``, windows of
    ``tile_sample_min_num_frames``); ``enable_tiling`` adds spatial tiles and sets the
    sizes; ``enable_slicing`` runs a batch one video at a time.
    """

    def __init__(self, config: HunyuanVideoVAEConfig, weights: Path | None = None) -> None:
        dispatch_synchronously_on_cpu()
        compute_dtype(config.compute_dtype)  # refuses a dtype this device cannot compute in
        self.config = config
        if weights is None:
            self.model = AutoencoderKLHunyuanVideo(config)
        else:  # no random initial values: the checkpoint replaces them all
            with no_init_parameters():
                self.model = AutoencoderKLHunyuanVideo(config)
        self.model.set_train(False)
        if weights is not None:
            load_weights(self.model, weights, "hunyuanvideo-vae", config.weight_dtype, config.stream_weights)
        self.use_tiling = False
        self.use_slicing = False
        self.use_framewise_encoding = True
        self.use_framewise_decoding = True
        self.tiles = TileSizes()
        if config.tiling is not None:
            self.enable_tiling(**config.tiling)
        if config.slicing:
            self.enable_slicing()

    def enable_tiling(self, tile_sample_min_height: int | None = None,
                      tile_sample_min_width: int | None = None,
                      tile_sample_min_num_frames: int | None = None,
                      tile_sample_stride_height: int | None = None,
                      tile_sample_stride_width: int | None = None,
                      tile_sample_stride_num_frames: int | None = None) -> None:
        """Encode and decode in overlapping spatial tiles; arguments left as None keep their value.

        ``tile_sample_min_*`` is the tile's size in video pixels (frames), also the size
        above which a video is tiled; ``tile_sample_stride_*`` the distance between tiles.
        Spatial values must be multiples of the spatial compression, frame values of the
        temporal compression.
        """
        given = {
            "tile_sample_min_height": tile_sample_min_height,
            "tile_sample_min_width": tile_sample_min_width,
            "tile_sample_min_num_frames": tile_sample_min_num_frames,
            "tile_sample_stride_height": tile_sample_stride_height,
            "tile_sample_stride_width": tile_sample_stride_width,
            "tile_sample_stride_num_frames": tile_sample_stride_num_frames,
        }
        tiles = replace(self.tiles, **{k: v for k, v in given.items() if v is not None})
        tiles.check(self.config.spatial_compression_ratio, self.config.temporal_compression_ratio)
        self.tiles = tiles
        self.use_tiling = True

    def disable_tiling(self) -> None:
        self.use_tiling = False

    def enable_slicing(self) -> None:
        """Encode and decode a batch one item at a time (less memory, same result)."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    # -- encoding -----------------------------------------------------------------------------

    def encode(self, video: np.ndarray) -> np.ndarray:
        video = check_video(video)
        batch, _, frames, height, width = video.shape
        if batch < 1:
            raise ContractError("video: expected at least one video in dim 0 of [B, 3, F, H, W], got 0")
        s, t = self.config.spatial_compression_ratio, self.config.temporal_compression_ratio
        if frames < 1 or (frames - 1) % t:
            raise ContractError(f"video: expected {t}k+1 frames (1, {t + 1}, {2 * t + 1}, ...) in dim 2 of "
                                f"[B, 3, F, H, W], got {frames}")
        if height < s or width < s or height % s or width % s:
            raise ContractError(f"video: expected height and width that are positive multiples of {s}, "
                                f"got {height}x{width}")
        return self._sliced(video, self._encode)

    def _encode(self, video: np.ndarray) -> np.ndarray:
        tiles = self.tiles
        if self.use_framewise_encoding and video.shape[2] > tiles.tile_sample_min_num_frames:
            t = self.config.temporal_compression_ratio
            blend = (tiles.tile_sample_min_num_frames - tiles.tile_sample_stride_num_frames) // t
            return tiled_temporal(video, self._encode_frames, tiles.tile_sample_min_num_frames,
                                  tiles.tile_sample_stride_num_frames,
                                  tiles.tile_sample_stride_num_frames // t, blend,
                                  (video.shape[2] - 1) // t + 1)
        return self._encode_frames(video)

    def _encode_frames(self, video: np.ndarray) -> np.ndarray:
        tiles, s = self.tiles, self.config.spatial_compression_ratio
        height, width = video.shape[-2:]
        if self.use_tiling and (height > tiles.tile_sample_min_height or width > tiles.tile_sample_min_width):
            size = (tiles.tile_sample_min_height, tiles.tile_sample_min_width)
            stride = (tiles.tile_sample_stride_height, tiles.tile_sample_stride_width)
            return tiled_spatial(video, self._encode_tile, size, stride, (stride[0] // s, stride[1] // s),
                                 ((size[0] - stride[0]) // s, (size[1] - stride[1]) // s),
                                 (height // s, width // s))
        return self._encode_tile(video)

    def _encode_tile(self, video: np.ndarray) -> np.ndarray:
        return self.model.encode_mean(Tensor(np.ascontiguousarray(video), ms.float32)).asnumpy()

    # -- decoding -----------------------------------------------------------------------------

    def decode(self, latents: np.ndarray) -> np.ndarray:
        latents = check_latents(latents, self.config.latent_channels)
        if 0 in latents.shape:
            raise ContractError(f"latents: expected no empty dimension in [B, C, T, h, w], "
                                f"got shape {tuple(latents.shape)}")
        return self._sliced(latents, self._decode)

    def _decode(self, latents: np.ndarray) -> np.ndarray:
        tiles, t = self.tiles, self.config.temporal_compression_ratio
        if self.use_framewise_decoding and latents.shape[2] > tiles.tile_sample_min_num_frames // t:
            return tiled_temporal(latents, self._decode_frames, tiles.tile_sample_min_num_frames // t,
                                  tiles.tile_sample_stride_num_frames // t,
                                  tiles.tile_sample_stride_num_frames,
                                  tiles.tile_sample_min_num_frames - tiles.tile_sample_stride_num_frames,
                                  (latents.shape[2] - 1) * t + 1)
        return self._decode_frames(latents)

    def _decode_frames(self, latents: np.ndarray) -> np.ndarray:
        tiles, s = self.tiles, self.config.spatial_compression_ratio
        height, width = latents.shape[-2:]
        size = (tiles.tile_sample_min_height // s, tiles.tile_sample_min_width // s)
        if self.use_tiling and (height > size[0] or width > size[1]):
            stride = (tiles.tile_sample_stride_height, tiles.tile_sample_stride_width)
            return tiled_spatial(latents, self._decode_tile, size, (stride[0] // s, stride[1] // s), stride,
                                 (tiles.tile_sample_min_height - stride[0],
                                  tiles.tile_sample_min_width - stride[1]),
                                 (height * s, width * s))
        return self._decode_tile(latents)

    def _decode_tile(self, latents: np.ndarray) -> np.ndarray:
        return self.model(Tensor(np.ascontiguousarray(latents), ms.float32)).asnumpy()

    def _sliced(self, batch: np.ndarray, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        try:
            if self.use_slicing and batch.shape[0] > 1:
                return np.concatenate([run(batch[i:i + 1]) for i in range(batch.shape[0])])
            return run(batch)
        finally:  # the convolutions' scratch buffers are kept only while a call runs
            release_scratch()

