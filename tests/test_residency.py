"""The memory policy: which components are built when, and what a run reports of its stages."""

from __future__ import annotations

import json
import weakref

import numpy as np
import pytest

import zoo
from plugins.common.memory import parse_bytes
from tests.test_pipeline import zoo_cli
from zoo.assembly import as_spec, plan
from zoo.residency import Components, choose_policy

SIZE = dict(height=32, width=32, num_frames=5, num_inference_steps=2, seed=0, progress=False)
MODELS = ("encoder", "backbone", "autoencoder")


def test_low_builds_each_component_for_its_stage_only():
    pipe = zoo.assemble("hunyuanvideo-tiny", memory="low")
    assert pipe.memory_policy == "low" and not set(pipe.components.built) & set(MODELS)
    result = pipe("a cat", **SIZE)
    assert [s.name for s in result.stages] == ["load encoder", "encode", "load backbone", "denoise",
                                               "load autoencoder", "decode"]
    assert not set(pipe.components.built) & set(MODELS)  # each released after its stage


def test_low_frees_each_component_before_the_next_is_built(monkeypatch):
    built, alive_then = [], []
    get = Components.get

    def spy(self, kind):
        if kind in MODELS and kind not in self.built:
            alive_then.append([ref() is not None for ref in built])
            component = get(self, kind)
            built.append(weakref.ref(component))
            return component
        return get(self, kind)

    monkeypatch.setattr(Components, "get", spy)
    zoo.assemble("hunyuanvideo-tiny", memory="low")("a cat", **SIZE)
    assert alive_then == [[], [False], [False, False]]
    assert all(ref() is None for ref in built)


def test_fast_keeps_every_component_and_gives_the_same_frames():
    fast = zoo.assemble("hunyuanvideo-tiny", memory="fast")
    assert set(fast.components.built) == {"encoder", "backbone", "autoencoder", "scheduler"}
    assert [s.name for s in fast.log.stages] == ["load encoder", "load backbone", "load autoencoder"]
    result = fast("a cat", **SIZE)
    assert [s.name for s in result.stages] == ["encode", "denoise", "decode"]
    assert all(s.seconds > 0 and s.peak_rss_bytes > 0 for s in result.stages)
    low = zoo.assemble("hunyuanvideo-tiny", memory="low")("a cat", **SIZE)
    np.testing.assert_array_equal(result.frames, low.frames)


def test_auto_is_low_when_the_checkpoints_do_not_fit(monkeypatch):
    checked = plan(as_spec("hunyuanvideo-tiny")[0])
    monkeypatch.setenv("HUNYUAN_ZOO_MEMORY", "1MB")
    policy, reason = choose_policy("auto", checked)
    assert policy == "low" and "1.0 MB" not in reason and "available" in reason
    monkeypatch.setenv("HUNYUAN_ZOO_MEMORY", "64GiB")
    assert choose_policy("auto", checked)[0] == "fast"
    assert choose_policy("low", checked) == ("low", "as asked")
    with pytest.raises(ValueError, match="choose one of auto, low, fast"):
        choose_policy("small", checked)


@pytest.mark.parametrize(("text", "size"), [("16GiB", 16 * 2**30), ("500 MB", 500_000_000), ("1e9", 10**9)])
def test_memory_budget_sizes(text, size):
    assert parse_bytes(text) == size


def test_a_bad_memory_budget_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("HUNYUAN_ZOO_MEMORY", "lots")
    result = zoo_cli("generate", "a cat", "--out", str(tmp_path / "v.mp4"))
    assert result.returncode == 2 and "HUNYUAN_ZOO_MEMORY='lots'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_generate_prints_the_policy_and_writes_stage_figures(tmp_path):
    stats = tmp_path / "run.json"
    result = zoo_cli("generate", "a cat", "--frames", "5", "--steps", "2", "--memory", "low",
                     "--stats", str(stats), "--out", str(tmp_path / "v.mp4"))
    assert result.returncode == 0, result.stderr
    assert "memory: low (as asked)" in result.stderr and "denoise: " in result.stderr
    figures = json.loads(stats.read_text())
    assert figures["memory"] == "low"
    assert [s["name"] for s in figures["stages"]] == ["load encoder", "encode", "load backbone", "denoise",
                                                      "load autoencoder", "decode"]
    assert figures["peak_rss_bytes"] == max(s["peak_rss_bytes"] for s in figures["stages"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "v.mp4"]
