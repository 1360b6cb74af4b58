"""Options of the flow-matching schedulers (numpy only, importable without a framework)."""

from typing import Any, ClassVar, Literal

from pydantic import Field

from contracts import ComponentConfig


class FlowMatchConfig(ComponentConfig):
    """``shift`` bends the schedule towards high noise: ``s' = shift*s / (1 + (shift-1)*s)``.

    ``spacing`` chooses the unshifted sigmas of N steps:
    ``"hunyuanvideo"`` is ``linspace(1, 0, N+1)[:-1]``, what ``HunyuanVideoPipeline``
    passes to the scheduler; ``"diffusers"`` is the scheduler's own
    ``set_timesteps(N)`` default, ``linspace(1, shifted(1/T), N)`` shifted once more.
    """

    inert_saved_keys: ClassVar[dict[str, Any]] = {  # diffusers' scheduler options, switched off
        "use_dynamic_shifting": False, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
        "max_image_seq_len": 4096, "invert_sigmas": False, "shift_terminal": None, "use_karras_sigmas": False,
        "use_exponential_sigmas": False, "use_beta_sigmas": False, "time_shift_type": "exponential",
        "stochastic_sampling": False,
    }

    num_train_timesteps: int = Field(1000, ge=1)
    shift: float = Field(7.0, gt=0)
    spacing: Literal["hunyuanvideo", "diffusers"] = "hunyuanvideo"
