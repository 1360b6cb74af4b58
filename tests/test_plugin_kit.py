"""The plugin authors' kit: the example package, `zoo check`, the pytest plugin."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import CONTRACT_VERSION
from tests.packages import pip_install, write_package

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zoo-karras-flow"

BACKWARDS_EULER = f'''
import numpy as np
from contracts import Schedule
from registry import hookimpl

CONTRACT_VERSION = "{CONTRACT_VERSION}"


class BackwardsEuler:
    """Steps against the velocity: the sign error the kit must catch."""

    def __init__(self, config, weights=None):
        self.config = config

    def schedule(self, n):
        sigmas = np.linspace(1, 0, n + 1).astype(np.float32)
        return Schedule(timesteps=sigmas[:-1] * 1000, sigmas=sigmas)

    def step(self, velocity, schedule, index, sample):
        return sample - (schedule.sigmas[index + 1] - schedule.sigmas[index]) * velocity


class NoWeightsArgument(BackwardsEuler):
    def __init__(self, config):
        self.config = config


@hookimpl
def register_components(registry):
    registry.register("scheduler", "backwards-euler", BackwardsEuler, summary="broken on purpose")
    registry.register("scheduler", "cannot-build", NoWeightsArgument, summary="broken on purpose")
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The example package and a broken plugin, pip-installed into a folder of their own."""
    root = tmp_path_factory.mktemp("kit")
    broken = write_package(root / "src", "zoo-backwards-euler", BACKWARDS_EULER)
    return pip_install([EXAMPLE, broken], root / "site")


def run(site, *args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(site), "GLOG_v": "3"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_the_example_plugin_is_listed_with_its_package(site):
    result = run(site, "-m", "zoo.cli", "list", "flow-match-euler-*")
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[1].split()
    assert row[:3] == ["scheduler", "flow-match-euler-karras", "zoo-karras-flow"]


def test_zoo_check_passes_the_example_plugin(site):
    result = run(site, "-m", "zoo.cli", "check", "scheduler", "flow-match-euler-karras",
                 "--option", "shift=5", "--examples", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASS  ") == 4 and "4 passed, 0 failed" in result.stdout


def test_zoo_check_fails_a_broken_plugin_with_the_property_and_an_example(site):
    result = run(site, "-m", "zoo.cli", "check", "scheduler", "backwards-euler", "--examples", "10")
    assert result.returncode == 1
    assert "FAIL  exact_velocity_lands_on_clean_sample" in result.stdout
    assert "num_steps=1," in result.stdout  # the example hypothesis shrank it to
    assert "PASS  zero_velocity_is_identity" in result.stdout
    assert "3 passed, 1 failed" in result.stdout


def test_zoo_check_reports_a_component_that_cannot_be_built_once(site):
    result = run(site, "-m", "zoo.cli", "check", "scheduler", "cannot-build")
    assert result.returncode == 1 and "PASS" not in result.stdout and "FAIL" not in result.stdout
    assert "cannot build scheduler 'cannot-build': TypeError" in result.stderr


def test_the_example_suite_runs_the_kit_through_the_pytest_plugin(site):
    result = run(site, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--hypothesis-profile=zoo-ci",
                 "tests", cwd=EXAMPLE)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "16 passed" in result.stdout
    for prop in ("sigmas_fall_to_zero", "zero_velocity_is_identity", "step_is_affine",
                 "exact_velocity_lands_on_clean_sample"):
        assert f"test_contract[{prop}] PASSED" in result.stdout
