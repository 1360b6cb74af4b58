"""Contract properties: named checks that any component of a kind must pass.

A property is a function ``check(make)`` where ``make()`` builds a fresh
component; it raises ``AssertionError`` (hypothesis adds the shrunk example)
when the component breaks the contract. Properties are registered per kind with
``@contract_property(kind, "what it promises")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts import KINDS

Make = Callable[[], Any]


@dataclass(frozen=True)
class ContractProperty:
    kind: str
    title: str
    check: Callable[[Make], None]

    @property
    def id(self) -> str:
        return self.check.__name__


PROPERTIES: dict[str, list[ContractProperty]] = {kind: [] for kind in KINDS}


def contract_property(kind: str, title: str) -> Callable[[Callable[[Make], None]], Callable[[Make], None]]:
    """Register ``check`` as a property every ``kind`` component must have."""

    def register(check: Callable[[Make], None]) -> Callable[[Make], None]:
        PROPERTIES[kind].append(ContractProperty(kind, title, check))
        return check

    return register
