"""``hunyuanvideo-transformer-parallel`` and ``zoo generate --devices``.

In one process: the split layers hold their slices of the checkpoint (the ranks' slices together are
the whole), a group of one computes what the transformer computes, and a split that does not divide
or workers with other versions are refused. Under ``msrun`` with 2 local workers: the backbone's
output equals the single-process transformer's on drawn tiny configs, ``zoo generate --devices 2``
writes the frames the single-process pipeline writes (within 1/255), and a worker that dies ends
the run with one line and no file. Each msrun run takes a free port, a timeout, and shows the
workers' logs when it fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mindspore import Tensor

import zoo
from contracts import TextEmbeddings
from plugins.common.weights import save_weights, seed_parameters
from plugins.hunyuanvideo_parallel.backbone import ParallelTransformer
from plugins.hunyuanvideo_parallel.comm import Group, ParallelError
from plugins.hunyuanvideo_parallel.config import ParallelTransformerConfig, check_divides
from plugins.hunyuanvideo_parallel.split import shards_of
from plugins.hunyuanvideo_transformer.backbone import HunyuanVideoTransformer
from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig

TOLERANCE = 1e-4
MSRUN_TIMEOUT_S = 150
BIN = Path(sys.executable).parent
ENV = {**os.environ, "GLOG_v": "3", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def tiny(heads: int = 2, head_dim: int = 8, mlp_ratio: float = 2.0, dual: int = 1, single: int = 1,
         guidance: bool = True) -> dict:
    axes = (2, 2, head_dim - 4)
    return dict(in_channels=4, out_channels=4, num_attention_heads=heads, attention_head_dim=head_dim,
                rope_axes_dim=axes, num_layers=dual, num_single_layers=single, num_refiner_layers=1,
                mlp_ratio=mlp_ratio, patch_size=2, patch_size_t=1, guidance_embeds=guidance, text_embed_dim=6,
                pooled_projection_dim=4)


def checkpoint(folder: Path, options: dict, seed: int = 0) -> Path:
    """A transformer checkpoint with random weights, in ``folder``."""
    reference = HunyuanVideoTransformer(HunyuanVideoTransformerConfig(**options))
    seed_parameters(reference.network, seed)
    save_weights(reference.network, folder)
    (folder / "config.json").write_text(json.dumps(options))
    return folder


def inputs(seed: int, batch: int = 1, guidance: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    real = rng.integers(1, 6, size=batch)
    out = dict(latents=rng.standard_normal((batch, 4, 2, 4, 4), dtype=np.float32),
               timestep=np.full(batch, rng.uniform(1, 1000), np.float32),
               hidden=rng.standard_normal((batch, 5, 6), dtype=np.float32),
               mask=np.arange(5)[None] < real[:, None],
               pooled=rng.standard_normal((batch, 4), dtype=np.float32))
    if guidance:
        out["guidance"] = np.full(batch, 6.0, np.float32)
    return out


def single_process(folder: Path, given: dict[str, np.ndarray]) -> np.ndarray:
    config = HunyuanVideoTransformerConfig(**json.loads((folder / "config.json").read_text()))
    backbone = HunyuanVideoTransformer(config, folder)
    text = TextEmbeddings(hidden_states=given["hidden"], attention_mask=given["mask"], pooled=given["pooled"])
    return backbone(given["latents"], given["timestep"], text, given.get("guidance"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def msrun(script: list[str], logs: Path) -> None:
    """``script`` on 2 local workers; on failure or timeout the workers' logs are in the message."""
    command = [str(BIN / "msrun"), "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", f"--log_dir={logs}", "--join=True", "--cluster_time_out=60",
               "python", *script]
    try:
        done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=MSRUN_TIMEOUT_S,
                              start_new_session=True)
        failed = done.returncode != 0
    except subprocess.TimeoutExpired:
        failed = True
    if failed:
        shown = "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in sorted(logs.glob("*.log")))
        pytest.fail(f"msrun failed:\n{shown}")


# --- one process ---------------------------------------------------------------------------------


def test_ranks_hold_their_slices_which_together_are_the_checkpoint(tmp_path):
    options = tiny(heads=4, mlp_ratio=4.0, dual=1, single=1)
    folder = checkpoint(tmp_path, options)
    config = ParallelTransformerConfig(**options)
    whole = HunyuanVideoTransformer(HunyuanVideoTransformerConfig(**options), folder).network
    full = {name: param.asnumpy() for name, param in whole.parameters_and_names()}
    ranks = [ParallelTransformer(config, folder, group=Group(rank, 2)) for rank in range(2)]
    params = [dict(r.network.parameters_and_names()) for r in ranks]
    shards = [shards_of(r.network) for r in ranks]
    assert "single_transformer_blocks.0.proj_out.weight" in shards[0]
    assert "transformer_blocks.0.norm1.linear.weight" in shards[0]
    for name, values in full.items():
        held = [p[name].asnumpy() for p in params]
        if name not in shards[0]:  # held whole on every rank
            for own in held:
                np.testing.assert_array_equal(own, values)
            continue
        shard = shards[0][name]
        if shards[1][name].zero:  # a row layer's bias: added once, by rank 0
            np.testing.assert_array_equal(held[0], values)
            np.testing.assert_array_equal(held[1], np.zeros_like(values))
            continue
        if len(shard.ranges) == 2:  # a single block's proj_out: attention inputs, then MLP inputs
            split = options["num_attention_heads"] * options["attention_head_dim"] // 2
            together = np.concatenate([held[0][:, :split], held[1][:, :split], held[0][:, split:],
                                       held[1][:, split:]], axis=1)
        else:
            together = np.concatenate(held, axis=shard.axis)
        np.testing.assert_array_equal(together, values, err_msg=name)
    halved = {name for name in shards[0] if not shards[1][name].zero}
    for own in ranks:
        assert own.held_bytes == sum(v.nbytes // 2 if name in halved else v.nbytes for name, v in full.items())


@settings(max_examples=4, deadline=None)
@given(heads=st.sampled_from([1, 2, 3]), mlp_ratio=st.sampled_from([1.0, 2.0]), batch=st.integers(1, 2),
       guidance=st.booleans(), seed=st.integers(0, 100))
def test_a_group_of_one_is_the_transformer(tmp_path_factory, monkeypatch, heads, mlp_ratio, batch, guidance, seed):
    """Bit for bit, against the transformer on the path the split layers take (MindSpore's ops; on
    oneDNN's float32 path it differs by float32 rounding, which the two-worker test allows)."""
    folder = checkpoint(tmp_path_factory.mktemp("ckpt"), tiny(heads=heads, mlp_ratio=mlp_ratio, guidance=guidance),
                        seed)
    given_inputs = inputs(seed, batch, guidance)
    monkeypatch.setenv("HUNYUAN_ZOO_CPU_ONEDNN", "0")
    expected = single_process(folder, given_inputs)
    config = ParallelTransformerConfig(**json.loads((folder / "config.json").read_text()))
    backbone = ParallelTransformer(config, folder, group=Group())
    text = TextEmbeddings(hidden_states=given_inputs["hidden"], attention_mask=given_inputs["mask"],
                          pooled=given_inputs["pooled"])
    got = backbone(given_inputs["latents"], given_inputs["timestep"], text, given_inputs.get("guidance"))
    np.testing.assert_array_equal(got, expected)


def test_a_split_that_does_not_divide_is_refused():
    config = ParallelTransformerConfig(**tiny(heads=3))
    with pytest.raises(ValueError, match=r"3 processes cannot split 3 attention heads|cannot split"):
        check_divides(config, 2)
    with pytest.raises(ValueError, match=r"use one of \[1, 2\]"):
        check_divides(ParallelTransformerConfig(**tiny(heads=2)), 4)


class _Disagreeing(Group):
    """Two ranks whose second reports another fingerprint."""

    def gather_last(self, x: Tensor) -> Tensor:
        mine = x.asnumpy()
        return Tensor(np.concatenate([mine, mine + 1], axis=-1))


def test_workers_with_other_versions_are_refused():
    with pytest.raises(ParallelError, match=r"worker\(s\) \[1\] run other versions than worker 0 \(hunyuan-zoo"):
        _Disagreeing(0, 2).check_same_versions()


def test_lora_is_refused(tmp_path):
    options = {**tiny(), "loras": [{"path": str(tmp_path / "x.safetensors")}]}
    with pytest.raises(ParallelError, match="takes no LoRA adapters"):
        ParallelTransformer(ParallelTransformerConfig(**options), None, group=Group())


def test_registered_by_name():
    names = [info.name for info in zoo.list_components("backbone")]
    assert "hunyuanvideo-transformer-parallel" in names


# --- two workers under msrun ---------------------------------------------------------------------


def test_two_workers_compute_what_one_process_computes(tmp_path):
    rng = np.random.default_rng(7)
    cases = [dict(heads=2, mlp_ratio=2.0, dual=1, single=1, guidance=True, batch=1),
             dict(heads=4, mlp_ratio=4.0, dual=2, single=1, guidance=True, batch=2),
             dict(heads=2, mlp_ratio=1.0, dual=0, single=2, guidance=False, batch=1)]
    expected = {}
    for index, case in enumerate(cases):
        folder = tmp_path / f"case_{index}"
        batch = case.pop("batch")
        checkpoint(folder / "transformer", tiny(**case), seed=int(rng.integers(100)))
        given_inputs = inputs(int(rng.integers(100)), batch, case["guidance"])
        np.savez(folder / "inputs.npz", **given_inputs)
        expected[index] = single_process(folder / "transformer", given_inputs)
    msrun([str(Path(__file__).with_name("parallel_worker.py")), str(tmp_path)], tmp_path / "logs")
    for index in expected:
        folder = tmp_path / f"case_{index}"
        for rank in range(2):
            got = np.load(folder / f"velocity_{rank}.npy")
            np.testing.assert_allclose(got, expected[index], atol=TOLERANCE, rtol=0, err_msg=f"case {index}")
        held = [json.loads((folder / f"held_{rank}.json").read_text()) for rank in range(2)]
        assert held[0] == held[1]


def frames_of(folder: Path) -> np.ndarray:
    import av

    return np.stack([frame.to_ndarray(format="rgb24") for path in sorted(folder.glob("*.png"))
                     for frame in av.open(str(path)).decode(video=0)])


def zoo_cli(*args: str, timeout: float = MSRUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "zoo"), *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def test_generate_on_two_devices_writes_the_single_process_frames(tmp_path):
    settings_ = ["--height", "32", "--width", "32", "--frames", "5", "--steps", "2", "--seed", "3"]
    alone = zoo_cli("generate", "a red cat", *settings_, "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr[-4000:]
    done = zoo_cli("generate", "a red cat", "--devices", "2", *settings_, "--out", str(tmp_path / "frames"))
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"wrote {tmp_path / 'frames'}" in done.stdout
    expected, got = frames_of(tmp_path / "alone"), frames_of(tmp_path / "frames")
    assert got.shape == expected.shape == (5, 32, 32, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # within 1/255


def test_devices_beyond_this_machine_is_one_line_and_status_2(tmp_path):
    done = zoo_cli("generate", "a cat", "--devices", str((os.cpu_count() or 1) + 1), "--out", str(tmp_path / "v.mp4"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "CPU core(s)" in done.stderr and "--devices" in done.stderr
    assert not (tmp_path / "v.mp4").exists()


def test_a_port_in_use_is_one_line_and_status_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = zoo_cli("generate", "a cat", "--devices", "2", "--port", str(port), "--out", str(tmp_path / "v.mp4"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert f"--port {port}: in use" in done.stderr


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rank_of(pid: int) -> int | None:
    try:
        env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    except OSError:
        return None
    return int(env["RANK_ID"]) if env.get("MS_ROLE") == "MS_WORKER" else None


def test_a_worker_that_dies_ends_the_run_with_one_line_and_no_file(tmp_path):
    out = tmp_path / "v.mp4"
    launcher = subprocess.Popen([str(BIN / "zoo"), "generate", "a cat", "--devices", "2", "--steps", "500",
                                 "--out", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        victim = None
        while victim is None and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.5)
            victim = next((pid for pid in _descendants(launcher.pid) if _rank_of(pid) == 1), None)
        assert victim is not None, "worker 1 never started"
        time.sleep(8)  # into the denoising loop
        os.kill(victim, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=90)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert launcher.returncode == 1
    errors = [line for line in stderr.splitlines() if line.startswith("zoo: error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert "worker 1 failed (killed by signal 9)" in errors[0] and "no video was written" in errors[0]
    assert list(tmp_path.iterdir()) == []
