"""Flow-matching schedulers: Euler (HunyuanVideo's own) and Heun."""

from plugins.flow_match.config import FlowMatchConfig
from registry import hookimpl

CONTRACT_VERSION = "1.0"


@hookimpl
def register_components(registry):
    registry.register(
        "scheduler", "flow-match-euler", "plugins.flow_match.euler:FlowMatchEuler",
        config=FlowMatchConfig, aliases=("euler",),
        summary="Flow-matching Euler with shift (diffusers' FlowMatchEulerDiscreteScheduler)",
    )
    registry.register(
        "scheduler", "flow-match-heun", "plugins.flow_match.heun:FlowMatchHeun",
        config=FlowMatchConfig, aliases=("heun",),
        summary="Flow-matching Heun, second order, two backbone calls a step "
                "(diffusers' FlowMatchHeunDiscreteScheduler)",
    )
