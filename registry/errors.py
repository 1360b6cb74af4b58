"""Registry errors: each says what went wrong and what to do instead."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import ValidationError


class RegistryError(LookupError):
    """Base of the registry's errors."""


class UnknownKindError(RegistryError):
    def __init__(self, kind: str, kinds: Iterable[str]):
        super().__init__(f"unknown component kind {kind!r}; the kinds are: {', '.join(kinds)}")


class UnknownComponentError(RegistryError):
    """No component of that kind has that name; the message lists the closest names."""

    def __init__(self, kind: str | None, name: str, known: Iterable[str], other_kinds: Iterable[str] = (),
                 broken_plugins: int = 0):
        known = sorted(set(known))
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        where = f"{kind} " if kind else ""
        if close:
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
        elif known:
            hint = f"registered: {', '.join(known)}"
        else:
            hint = "none is registered (see `zoo plugins` for plugins that failed to load)"
        other_kinds = list(other_kinds)
        if other_kinds:
            hint = f"{name!r} is a {' and a '.join(other_kinds)}, not a {kind}"
        if broken_plugins:
            hint += f" ({broken_plugins} plugin(s) failed to load; see `zoo plugins`)"
        super().__init__(f"no {where}component named {name!r}; {hint}")
        self.suggestions = close


class ComponentOptionsError(ValueError):
    """Options a component does not have, or of the wrong type: one clause per problem."""

    def __init__(self, kind: str, name: str, error: ValidationError, fields: list[str]):
        clauses = []
        for problem in error.errors():
            option = ".".join(str(part) for part in problem["loc"]) or "options"
            if problem["type"] == "extra_forbidden":
                close = difflib.get_close_matches(option, fields, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"options are: {', '.join(fields)}"
                clauses.append(f"unknown option {option!r}; {hint}")
            else:
                clauses.append(f"option {option!r}: {problem['msg']} (got {problem.get('input')!r})")
        super().__init__(f"{kind} {name!r}: " + "; ".join(clauses))


class DuplicateComponentError(RegistryError):
    def __init__(self, kind: str, name: str, first: str, second: str):
        super().__init__(
            f"{kind} {name!r} is registered by both plugin {first!r} and plugin {second!r}; "
            f"uninstall one of them or rename the component"
        )


class IncompatiblePluginError(RegistryError):
    def __init__(self, plugin: str, declared: str, ours: str):
        newer = tuple(map(int, declared.split("."))) > tuple(map(int, ours.split(".")))
        fix = ("upgrade hunyuan-zoo to a release that provides it" if newer
               else "upgrade the plugin to a release built for this contract")
        super().__init__(f"plugin {plugin!r} declares contract version {declared}, but this hunyuan-zoo "
                         f"provides contract version {ours}; {fix}")
