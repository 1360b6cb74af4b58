"""Options of the parallel transformer (pydantic only, importable without a framework): the
transformer's own, under diffusers' names, so a checkpoint's ``config.json`` loads as data."""

from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig


class ParallelTransformerConfig(HunyuanVideoTransformerConfig):
    """Split across the processes ``msrun`` started: ``num_attention_heads`` and the MLP's hidden
    features must divide by their number. Weights are read into memory, each process its slices
    (``stream_weights`` is not used: a split checkpoint is what makes the model fit)."""
