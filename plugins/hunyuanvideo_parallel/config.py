"""Options of the parallel transformer (pydantic only, importable without a framework): the
transformer's own, under diffusers' names, so a checkpoint's ``config.json`` loads as data."""

from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig

# Intra-op threads of each worker, set by a launcher that puts several workers on one machine's cores;
# worker k then runs on cores [k * threads, (k + 1) * threads).
THREADS_VARIABLE = "HUNYUAN_ZOO_THREADS"


class ParallelTransformerConfig(HunyuanVideoTransformerConfig):
    """Split across the processes ``msrun`` started: ``num_attention_heads`` and the MLP's hidden
    features must divide by their number. Weights are read into memory, each process its slices
    (``stream_weights`` is not used: a split checkpoint is what makes the model fit)."""


def check_divides(config: HunyuanVideoTransformerConfig, size: int) -> None:
    """Heads and MLP features must split evenly."""
    heads, mlp = config.num_attention_heads, int(config.inner_dim * config.mlp_ratio)
    if heads % size or mlp % size:
        fits = [n for n in range(1, heads + 1) if heads % n == 0 and mlp % n == 0]
        raise ValueError(f"{size} processes cannot split {heads} attention heads and {mlp} MLP features "
                         f"evenly; use one of {fits}")
