"""HunyuanVideo's causal 3D VAE: 4x temporal and 8x spatial compression to 16 channels."""

from plugins.hunyuanvideo_vae.config import HunyuanVideoVAEConfig
from registry import hookimpl

CONTRACT_VERSION = "1.0"


@hookimpl
def register_components(registry):
    registry.register(
        "autoencoder", "hunyuanvideo-vae", "plugins.hunyuanvideo_vae.model:HunyuanVideoVAE",
        config=HunyuanVideoVAEConfig,
        summary="HunyuanVideo causal 3D VAE, 4x8x8 compression, 16 channels, tiled and sliced "
                "(diffusers' AutoencoderKLHunyuanVideo)",
    )
