"""The contract kit: hypothesis-driven properties every component of a kind must have.

``run_properties(kind, make)`` runs them all; the properties live one module per kind.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from zoo.testkit import autoencoder, backbone, encoder, scheduler  # noqa: F401 - each registers its properties
from zoo.testkit.core import PROPERTIES, ContractProperty, Make, contract_property


@dataclass(frozen=True)
class Outcome:
    prop: ContractProperty
    error: str | None  # None when the property held

    @property
    def passed(self) -> bool:
        return self.error is None


def properties(kind: str) -> list[ContractProperty]:
    return list(PROPERTIES[kind])


def run_properties(kind: str, make: Make,
                   on_outcome: Callable[[Outcome], None] | None = None) -> Iterator[Outcome]:
    """Check every property of ``kind`` on components built by ``make``."""
    for prop in PROPERTIES[kind]:
        try:
            prop.check(make)
            outcome = Outcome(prop, None)
        except Exception as exc:  # noqa: BLE001 - a failing component may raise anything
            outcome = Outcome(prop, "".join(traceback.format_exception_only(exc)).strip())
        if on_outcome:
            on_outcome(outcome)
        yield outcome


__all__ = ["PROPERTIES", "ContractProperty", "Make", "Outcome", "contract_property",
           "properties", "run_properties"]
