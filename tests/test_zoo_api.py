"""What users touch: load_component, assemble, the CLI."""

import json
import subprocess
import sys
import warnings

import pytest

import zoo
from contracts import PipelineSpec
from registry import RegistryError


def test_options_are_validated_against_the_config():
    heun = zoo.load_component("scheduler", "flow-match-heun", shift=3.0)
    assert heun.config.shift == 3.0
    with pytest.raises(zoo.ComponentOptionsError, match="unknown option 'shfit'; did you mean 'shift'"):
        zoo.load_component("scheduler", "flow-match-euler", shfit=3.0)
    with pytest.raises(zoo.ComponentOptionsError, match="option 'shift': Input should be a valid number"):
        zoo.load_component("scheduler", "flow-match-euler", shift="high")
    with pytest.raises(zoo.ComponentOptionsError, match="option 'spacing'"):
        zoo.load_component("scheduler", "flow-match-euler", spacing="karras")


def test_a_saved_scheduler_config_loads_and_options_override_it(tmp_path):
    (tmp_path / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 5.0, "num_train_timesteps": 1000}))
    assert zoo.load_component("scheduler", "flow-match-euler", weights=tmp_path).config.shift == 5.0
    assert zoo.load_component("scheduler", "euler", weights=tmp_path, shift=2.0).config.shift == 2.0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        zoo.load_component("scheduler", "euler", weights=tmp_path / "missing")


def test_list_components_by_kind_and_pattern():
    names = [i.name for i in zoo.list_components("scheduler")]
    assert {"flow-match-euler", "flow-match-heun"} <= set(names)
    assert [i.name for i in zoo.list_components(pattern="flow-match-h*")] == ["flow-match-heun"]
    assert all(i.plugin == "hunyuan-zoo" for i in zoo.list_components("scheduler", "flow-*"))


def test_assemble_resolves_every_name_before_building_anything():
    spec = {"encoder": "no-such-encoder", "backbone": "no-such-backbone",
            "autoencoder": "no-such-vae", "scheduler": "flow-match-eulr"}
    with pytest.raises(RegistryError) as caught:
        zoo.assemble(spec)
    message = str(caught.value)
    assert "no-such-encoder" in message and "no-such-vae" in message
    assert "did you mean 'flow-match-euler'" in message


def test_swapping_a_scheduler_is_a_one_word_change():
    spec = PipelineSpec(encoder="e", backbone="b", autoencoder="a", scheduler="flow-match-euler")
    swapped = spec.replace(scheduler="flow-match-heun")
    assert swapped.scheduler.name == "flow-match-heun" and swapped.backbone == spec.backbone


def zoo_cli(*args):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True)


def test_cli_list_shows_both_schedulers_with_their_plugin_package():
    result = zoo_cli("list", "--kind", "scheduler")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["kind", "name", "plugin", "summary"]
    for name in ("flow-match-euler", "flow-match-heun"):
        row = next(line for line in lines if name in line)
        assert row.split()[0] == "scheduler" and "hunyuan-zoo" in row


def test_cli_info_lists_options_with_defaults():
    result = zoo_cli("info", "flow-match-euler")
    assert result.returncode == 0, result.stderr
    shift = next(line for line in result.stdout.splitlines() if line.startswith("shift"))
    assert shift.split()[:3] == ["shift", "float", "7.0"]


def test_cli_typo_gets_a_suggestion_not_a_traceback():
    result = zoo_cli("info", "flow-match-eulr")
    assert result.returncode == 2
    assert "did you mean 'flow-match-euler'" in result.stderr and "Traceback" not in result.stderr
    result = zoo_cli("list", "no-such-*")
    assert result.returncode == 1 and "no components match" in result.stdout


def test_cli_plugins_lists_packages_with_versions():
    result = zoo_cli("plugins")
    assert result.returncode == 0, result.stdout  # every built-in plugin loads
    for plugin in ("flow_match", "hunyuanvideo_text", "hunyuanvideo_transformer", "hunyuanvideo_vae"):
        row = next(line for line in result.stdout.splitlines() if line.startswith(plugin))
        assert "hunyuan-zoo 0.1.0" in row and "ok: " in row


def test_saved_settings_a_component_does_not_support_are_warned_about(tmp_path):
    saved = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 5.0, "use_karras_sigmas": False}
    (tmp_path / "scheduler_config.json").write_text(json.dumps(saved))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # switched-off features pass silently
        zoo.load_component("scheduler", "flow-match-euler", weights=tmp_path)
    (tmp_path / "scheduler_config.json").write_text(json.dumps({**saved, "use_karras_sigmas": True}))
    with pytest.warns(UserWarning, match="does not support: use_karras_sigmas=True"):
        zoo.load_component("scheduler", "flow-match-euler", weights=tmp_path)
