"""The contract kit as a pytest plugin (``pytest11`` entry point ``hunyuan_zoo``).

A plugin package's suite checks its component against every contract property
of its kind with::

    @pytest.mark.zoo_component("scheduler", "my-euler", shift=3.0)
    def test_contract(zoo_property, zoo_make):
        zoo_property.check(zoo_make)

Each property becomes its own test item. The marker takes the component's kind,
its registered name, and ``weights=`` and options as ``load_component`` does.
``--hypothesis-profile=zoo-ci`` draws fewer examples, for small CI machines.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings

from zoo.testkit import Make, properties

MARKER = "zoo_component"

settings.register_profile("zoo-ci", max_examples=10, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow],
                          phases=[p for p in Phase if p is not Phase.explain])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(kind, name, weights=None, **options): run the hunyuan-zoo contract "
                   "properties of a registered component in tests taking zoo_property and zoo_make")


def _marker(node) -> pytest.Mark:
    marker = node.get_closest_marker(MARKER)
    if marker is None or len(marker.args) != 2:
        raise pytest.UsageError(f"{node.name}: tests taking zoo_property or zoo_make need "
                                f"@pytest.mark.{MARKER}(kind, name, **options)")
    return marker


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "zoo_property" in metafunc.fixturenames:
        kind = _marker(metafunc.definition).args[0]
        metafunc.parametrize("zoo_property", properties(kind), ids=lambda prop: prop.id)


@pytest.fixture
def zoo_make(request: pytest.FixtureRequest) -> Make:
    """Builds a fresh instance of the marked component."""
    from zoo.components import load_component

    marker = _marker(request.node)
    kind, name = marker.args
    return lambda: load_component(kind, name, **marker.kwargs)
