"""Options of the flow-matching schedulers (numpy only, importable without a framework)."""

from typing import Literal

from pydantic import Field

from contracts import ComponentConfig


class FlowMatchConfig(ComponentConfig):
    """``shift`` bends the schedule towards high noise: ``s' = shift*s / (1 + (shift-1)*s)``.

    ``spacing`` chooses the unshifted sigmas of N steps:
    ``"hunyuanvideo"`` is ``linspace(1, 0, N+1)[:-1]``, what ``HunyuanVideoPipeline``
    passes to the scheduler; ``"diffusers"`` is the scheduler's own
    ``set_timesteps(N)`` default, ``linspace(1, shifted(1/T), N)`` shifted once more.
    """

    num_train_timesteps: int = Field(1000, ge=1)
    shift: float = Field(7.0, gt=0)
    spacing: Literal["hunyuanvideo", "diffusers"] = "hunyuanvideo"
