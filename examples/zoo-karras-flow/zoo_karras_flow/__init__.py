"""A hunyuan-zoo plugin: flow-matching Euler with Karras-spaced sigmas."""

from pydantic import Field

from contracts import ComponentConfig
from registry import hookimpl

CONTRACT_VERSION = "1.0"


class KarrasFlowConfig(ComponentConfig):
    """Sigmas spaced as Karras et al. (rho) between the shifted HunyuanVideo schedule's ends."""

    num_train_timesteps: int = Field(1000, ge=1)
    shift: float = Field(7.0, gt=0)
    rho: float = Field(7.0, gt=0)


@hookimpl
def register_components(registry):
    registry.register(
        "scheduler", "flow-match-euler-karras", "zoo_karras_flow.scheduler:KarrasFlowEuler",
        config=KarrasFlowConfig,
        summary="Flow-matching Euler with Karras sigmas (diffusers' use_karras_sigmas=True)",
    )
