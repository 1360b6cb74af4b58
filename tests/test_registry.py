"""The registry, through real plugin packages pip-installed into a temporary folder."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import CONTRACT_VERSION
from registry import (
    DuplicateComponentError,
    IncompatiblePluginError,
    Registry,
    UnknownComponentError,
    UnknownKindError,
    load_plugins,
)
from registry.plugins import ENTRY_POINT_GROUP
from tests.packages import pip_install, write_package

PLAIN_EULER = '''
import numpy as np
from contracts import ComponentConfig, Schedule
from registry import hookimpl

CONTRACT_VERSION = "{contract}"


class PlainEuler:
    """Flow-matching Euler without shift."""

    def __init__(self, config, weights=None):
        self.config = config

    def schedule(self, num_inference_steps):
        sigmas = np.linspace(1, 0, num_inference_steps + 1).astype(np.float32)
        return Schedule(timesteps=sigmas[:-1] * 1000, sigmas=sigmas)

    def step(self, velocity, schedule, index, sample):
        return sample + (schedule.sigmas[index + 1] - schedule.sigmas[index]) * velocity


@hookimpl
def register_components(registry):
    registry.register("{kind}", "{name}", PlainEuler, summary="plain Euler", aliases=({aliases}))
'''

PACKAGES = {
    # distribution: module source
    "zoo-plain-euler": PLAIN_EULER.format(contract=CONTRACT_VERSION, kind="scheduler",
                                          name="plain-euler", aliases='"plain",'),
    "zoo-broken-import": "import this_module_does_not_exist\n",
    "zoo-duplicate": PLAIN_EULER.format(contract=CONTRACT_VERSION, kind="scheduler",
                                        name="flow-match-euler", aliases=""),
    "zoo-future-contract": PLAIN_EULER.format(contract="2.0", kind="scheduler",
                                              name="future-euler", aliases=""),
    "zoo-bad-kind": PLAIN_EULER.format(contract=CONTRACT_VERSION, kind="vocoder",
                                       name="wavenet", aliases=""),
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The test plugins, pip-installed into a target folder that is put on sys.path."""
    root = tmp_path_factory.mktemp("plugins")
    folders = [write_package(root / "src", dist, source) for dist, source in PACKAGES.items()]
    target = root / "site"
    pip_install(folders, target)
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))


def entry_points(target: Path, *dists: str) -> list[importlib.metadata.EntryPoint]:
    found = [ep for dist in importlib.metadata.distributions(path=[str(target)])
             if dist.metadata["Name"] in dists for ep in dist.entry_points
             if ep.group == ENTRY_POINT_GROUP]
    assert len(found) == len(dists), f"installed entry points: {found}"
    return found


def builtin_entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def test_a_plugin_package_is_found_through_its_entry_point(installed):
    registry = load_plugins([*builtin_entry_points(), *entry_points(installed, "zoo-plain-euler")])
    info = registry.get("scheduler", "plain-euler").info
    assert (info.kind, info.name, info.plugin, info.summary) == (
        "scheduler", "plain-euler", "zoo-plain-euler", "plain Euler")
    assert registry.get("scheduler", "plain").name == "plain-euler"
    plugin = next(p for p in registry.plugins if p.package == "zoo-plain-euler")
    assert plugin.ok and plugin.version == "1.2.3" and plugin.components == ["scheduler:plain-euler"]
    schedule = registry.get("scheduler", "plain-euler").create().schedule(4)
    assert schedule.sigmas.tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_a_plugin_that_raises_on_import_is_reported_and_the_rest_work(installed):
    registry = load_plugins([*builtin_entry_points(),
                             *entry_points(installed, "zoo-broken-import", "zoo-plain-euler")])
    broken = next(p for p in registry.plugins if p.package == "zoo-broken-import")
    assert not broken.ok and "this_module_does_not_exist" in broken.error
    assert registry.get("scheduler", "plain-euler")
    assert registry.get("scheduler", "flow-match-euler")


def test_a_name_registered_twice_names_both_plugins(installed):
    registry = load_plugins([*builtin_entry_points(), *entry_points(installed, "zoo-duplicate")])
    duplicate = next(p for p in registry.plugins if p.package == "zoo-duplicate")
    assert "DuplicateComponentError" in duplicate.error
    assert "'hunyuan-zoo'" in duplicate.error and "'zoo-duplicate'" in duplicate.error
    assert registry.get("scheduler", "flow-match-euler").plugin == "hunyuan-zoo"


def test_an_incompatible_contract_version_is_refused_with_both_versions(installed):
    registry = load_plugins(entry_points(installed, "zoo-future-contract"))
    plugin = registry.plugins[0]
    assert "IncompatiblePluginError" in plugin.error
    assert "2.0" in plugin.error and CONTRACT_VERSION in plugin.error and "zoo_future_contract" in plugin.error
    assert "upgrade hunyuan-zoo" in plugin.error
    assert registry.list() == []
    with pytest.raises(UnknownComponentError, match=r"1 plugin\(s\) failed to load; see `zoo plugins`"):
        registry.get("scheduler", "future-euler")


def test_an_old_major_contract_version_asks_for_a_newer_plugin():
    with pytest.raises(IncompatiblePluginError, match="upgrade the plugin"):
        raise IncompatiblePluginError("old", "0.9", "1.0")


def test_a_plugin_registering_an_unknown_kind_is_refused_whole(installed):
    registry = load_plugins(entry_points(installed, "zoo-bad-kind"))
    assert "unknown component kind 'vocoder'" in registry.plugins[0].error
    assert registry.list() == []


def test_unknown_names_suggest_the_closest():
    registry = load_plugins(builtin_entry_points())
    with pytest.raises(UnknownComponentError, match="did you mean 'flow-match-euler'"):
        registry.get("scheduler", "flow-match-eular")
    with pytest.raises(UnknownComponentError, match="registered: "):
        registry.get("scheduler", "zzzzzz")
    with pytest.raises(UnknownComponentError, match="'flow-match-heun' is a scheduler, not a backbone"):
        registry.get("backbone", "flow-match-heun")
    with pytest.raises(UnknownKindError, match="the kinds are: encoder, backbone, autoencoder, scheduler"):
        registry.get("schedulers", "flow-match-euler")


def test_listing_by_kind_and_glob():
    registry = Registry()
    for kind, name in [("scheduler", "b-euler"), ("scheduler", "a-heun"), ("backbone", "a-dit")]:
        registry.register(kind, name, object, plugin="p", aliases=(f"{name}-alias",))
    assert [i.name for i in registry.list()] == ["a-dit", "a-heun", "b-euler"]
    assert [i.name for i in registry.list("scheduler")] == ["a-heun", "b-euler"]
    assert [i.name for i in registry.list(pattern="a-*")] == ["a-dit", "a-heun"]
    assert [i.name for i in registry.list(pattern="b-euler-al*")] == ["b-euler"]
    with pytest.raises(DuplicateComponentError, match="'p' and plugin 'q'"):
        registry.register("scheduler", "a-heun-alias", object, plugin="q")


def test_listing_does_not_import_mindspore():
    code = ("import sys, zoo; zoo.list_components(); from zoo.cli import main; main(['list']);"
            "main(['info', 'flow-match-euler']); assert 'mindspore' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
