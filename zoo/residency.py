"""Which components are in memory when: all at once (``fast``), or each only while it works (``low``).

Under ``low`` the pipeline builds the encoder, encodes and releases it before it builds
the backbone, and builds the autoencoder after the denoising loop, so the peak is the
largest component rather than their sum (the 8B text encoder and the 13B transformer
never share memory). ``auto`` picks ``low`` when the checkpoints would not fit in the
memory available with room to spare.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from plugins.common import memory
from plugins.common.checkpoint import Checkpoint, CheckpointError
from zoo.stages import StageLog

if TYPE_CHECKING:
    from zoo.assembly import Plan

POLICIES = ("auto", "low", "fast")
T = TypeVar("T")
# All resident only if the checkpoints take at most this share of the memory available.
FAST_BELOW = 0.7
# The encoder's weights folder is the pipeline folder; these of its subfolders are the encoder's.
ENCODER_SUBFOLDERS = ("text_encoder", "text_encoder_2")


def stored_bytes(folder: Path) -> int:
    """The bytes of the safetensors in ``folder`` (or a single file), or in its text encoder subfolders."""
    if folder.is_file():
        return Checkpoint(folder).nbytes
    folders = [folder] if any(folder.glob("*.safetensors")) else [
        folder / name for name in ENCODER_SUBFOLDERS if (folder / name).is_dir()]
    total = 0
    for each in folders:
        try:
            total += Checkpoint(each).nbytes
        except CheckpointError:
            continue
    return total


def choose_policy(policy: str, plan: Plan) -> tuple[str, str]:
    """The policy to use and why, in words."""
    if policy not in POLICIES:
        raise ValueError(f"memory policy {policy!r}: choose one of {', '.join(POLICIES)}")
    if policy != "auto":
        return policy, "as asked"
    total = sum(stored_bytes(folder) for folder in plan.weights.values() if folder is not None)
    budget = memory.available()
    chosen = "fast" if total <= FAST_BELOW * budget else "low"
    return chosen, f"auto: checkpoints {memory.gib(total)}, {memory.gib(budget)} available"


class Components:
    """The components of a checked plan, each built when first needed. Under ``low`` each is
    released when its stage ends; under ``fast`` all are built at once and kept."""

    def __init__(self, plan: Plan, policy: str, log: StageLog) -> None:
        self.plan, self.policy, self.log = plan, policy, log
        self.built: dict[str, Any] = {}
        if policy == "fast":
            for kind in plan.entries:
                self.get(kind)

    def get(self, kind: str) -> Any:
        if kind not in self.built:
            entry, config, weights = self.plan.entries[kind], self.plan.configs[kind], self.plan.weights[kind]
            if weights is None or kind == "scheduler":  # nothing worth measuring
                self.built[kind] = entry.build(config, weights)
            else:
                with self.log.stage(f"load {kind}"):
                    self.built[kind] = entry.build(config, weights)
        return self.built[kind]

    def run(self, kind: str, stage: str, work: Callable[[Any], T]) -> T:
        """``work(component)`` as the stage named ``stage``; under ``low``, the component is
        released after it. ``work`` gets the only reference the pipeline hands out, so once it
        has returned, releasing frees the component's memory."""
        component = self.get(kind)
        with self.log.stage(stage):
            result = work(component)
        del component
        if self.policy == "low":
            self.release(kind)
        return result

    def release(self, kind: str) -> None:
        if self.built.pop(kind, None) is not None:
            memory.give_back()
