"""Generating with the backbone split across processes: ``zoo generate --devices N`` starts ``msrun``
on this machine, and each worker (under that msrun or a user's own, across machines) runs the same
pipeline with the roles split.

Rank 0 alone encodes the prompts, decodes and writes the video; the other ranks receive the text
embeddings by ``Broadcast`` and take part in every backbone call (the parallel backbone sends them
rank 0's latents each step). A worker that fails ends the run: msrun stops the others, rank 0 never
renames its temporary output into place, and the launcher prints one line naming the worker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contracts import TextEmbeddings
from plugins.hunyuanvideo_parallel.config import THREADS_VARIABLE
from zoo.residency import Components

PARALLEL_BACKBONE = "hunyuanvideo-transformer-parallel"
# Seconds the workers may take to find each other before msrun gives up.
CLUSTER_TIMEOUT_S = 120
ERROR_PREFIX = "zoo: error:"
RESULT_PREFIX = "wrote "  # what zoo generate prints on stdout when it has written the video
WORKER_FAILED = "exit with exception"  # what msrun logs when a worker ends with a non-zero status
_MINDSPORE_LOG = re.compile(r"^\[(INFO|WARNING|ERROR|CRITICAL)\]")


def under_msrun() -> bool:
    """Whether msrun started this process (a worker, or msrun's scheduler running the same command)."""
    return os.environ.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED")


def group() -> Any:
    """This process's group (see ``plugins.hunyuanvideo_parallel.comm``); msrun's scheduler never
    returns from it."""
    from plugins.hunyuanvideo_parallel.comm import world

    return world()


class RankZeroEncoder:
    """Rank 0's encoder: encodes, then sends the embeddings to the other ranks."""

    def __init__(self, encoder: Any, group: Any) -> None:
        self.encoder, self.group = encoder, group

    def encode(self, prompts: Sequence[str], **options: Any) -> TextEmbeddings:
        return share_text(self.group, self.encoder.encode(prompts, **options))


class ReceivedEncoder:
    """Another rank's encoder: receives what rank 0 encoded; loads nothing."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def encode(self, prompts: Sequence[str], **options: Any) -> TextEmbeddings:
        return share_text(self.group, None)


def share_text(group: Any, text: TextEmbeddings | None) -> TextEmbeddings:
    """Rank 0's embeddings on every rank."""
    own = None if group.rank else (text.hidden_states, text.attention_mask, text.pooled)
    hidden, mask, pooled = group.broadcast(own)
    return TextEmbeddings(hidden_states=hidden, attention_mask=mask.astype(bool), pooled=pooled)


class SkippedAutoencoder:
    """Another rank's autoencoder, which loads nothing: rank 0 decodes and writes, so ``decode``
    returns an empty video ``[B, 3, 0, 0, 0]``; rank 0 encodes a conditioning image and the backbone
    takes rank 0's, so ``encode`` returns zeros of the latents' shape."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def decode(self, latents: np.ndarray) -> np.ndarray:
        return np.zeros((latents.shape[0], 3, 0, 0, 0), np.float32)

    def encode(self, video: np.ndarray) -> np.ndarray:
        cfg = self.config
        batch, _, frames, height, width = video.shape
        return np.zeros((batch, cfg.latent_channels, (frames - 1) // cfg.temporal_compression + 1,
                         height // cfg.spatial_compression, width // cfg.spatial_compression), np.float32)


class DistributedComponents(Components):
    """``Components`` with the roles split: on rank 0 the encoder also sends its embeddings; on the
    other ranks the encoder and autoencoder are stand-ins that load nothing."""

    def __init__(self, plan: Any, policy: str, log: Any, group: Any) -> None:
        self.group = group
        super().__init__(plan, policy, log)

    def get(self, kind: str) -> Any:
        if kind not in self.built and self.group.rank != 0 and kind in ("encoder", "autoencoder"):
            self.built[kind] = (ReceivedEncoder(self.group) if kind == "encoder"
                                else SkippedAutoencoder(self.plan.configs[kind]))
        component = super().get(kind)
        if kind == "encoder" and self.group.rank == 0 and not isinstance(component, RankZeroEncoder):
            component = self.built[kind] = RankZeroEncoder(component, self.group)
        return component


def check_devices(devices: int) -> None:
    """One worker per CPU core at most on this machine (more would only take turns on the cores)."""
    cores = os.cpu_count() or 1
    if devices < 1:
        raise ValueError(f"--devices {devices}: expected at least 1")
    if devices > cores:
        raise ValueError(f"--devices {devices}: this machine has {cores} CPU core(s), so at most {cores} workers "
                         f"can run here; use --devices {cores}, or start msrun yourself across machines "
                         f"(see the README)")


def check_port(port: int | None) -> int:
    """``port`` if it is free on this machine, else an error; a free one if None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port or 0))
        except OSError as exc:
            raise ValueError(f"--port {port}: in use on this machine ({exc.strerror}); choose another port, or "
                             f"leave --port out to take a free one") from None
        return probe.getsockname()[1]


def without_devices(argv: Sequence[str]) -> list[str]:
    """The command line the workers run: this one without ``--devices``/``--port`` (a worker never
    starts msrun)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--devices", "--port"):
            skip = True
            continue
        if arg.startswith(("--devices=", "--port=")):
            continue
        out.append(arg)
    return out


def launch(argv: Sequence[str], devices: int, port: int | None) -> int:
    """Run ``zoo <argv>`` on ``devices`` workers under msrun on this machine; the exit status.

    Rank 0's output is shown as it comes (MindSpore's own log lines left out); each worker's full
    log stays in a temporary folder that is removed after a successful run and named after a failed one.
    """
    check_devices(devices)
    port = check_port(port)
    msrun = shutil.which("msrun", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if msrun is None:
        raise ValueError("msrun not found: it comes with MindSpore; is the environment's bin/ on PATH?")
    logs = Path(tempfile.mkdtemp(prefix="zoo-msrun-"))
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           "GLOG_v": os.environ.get("GLOG_v", "3"), "PYTHONUNBUFFERED": "1",
           THREADS_VARIABLE: str(max(1, (os.cpu_count() or 1) // devices))}
    command = [msrun, f"--worker_num={devices}", f"--local_worker_num={devices}", "--master_addr=127.0.0.1",
               f"--master_port={port}", f"--log_dir={logs}", "--join=True", f"--cluster_time_out={CLUSTER_TIMEOUT_S}",
               "python", "-m", "zoo.cli", *without_devices(argv)]
    with open(logs / "msrun.log", "wb") as msrun_log:
        process = subprocess.Popen(command, stdout=msrun_log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        shown, open_line, ranks = 0, False, {}
        try:
            while process.poll() is None:
                shown, open_line = _show_new(logs / "worker_0.log", shown, open_line)
                if len(ranks) < devices:
                    ranks = _worker_ranks(process.pid)
                if WORKER_FAILED in _read(logs / "msrun.log"):
                    _stop(process, ranks)
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            process.send_signal(2)  # msrun stops its workers on SIGINT
            process.wait()
            raise
        shown, open_line = _show_new(logs / "worker_0.log", shown, open_line, final=True)
    if process.returncode == 0:
        shutil.rmtree(logs, ignore_errors=True)
        return 0
    if open_line:  # a progress bar cut short: the error line goes on a line of its own
        sys.stderr.write("\n")
    return _report_failure(logs, devices, ranks)


def _stop(process: subprocess.Popen, ranks: dict[int, int]) -> None:
    """End a failed run now: msrun stops the workers at once but then waits for its scheduler, which
    waits for the dead worker's heartbeat to time out (tens of seconds)."""
    time.sleep(1)  # msrun's own stopping of the workers
    for pid in ranks:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.killpg(process.pid, signal.SIGKILL)  # msrun and its scheduler (the session this launcher started)
    process.wait()


def _worker_ranks(msrun_pid: int) -> dict[int, int]:
    """msrun's worker processes: pid -> rank (from their environment, on Linux; empty elsewhere)."""
    ranks = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != msrun_pid:
                continue
            env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if env.get("MS_ROLE") == "MS_WORKER" and env.get("RANK_ID", "").isdigit():
            ranks[int(entry.name)] = int(env["RANK_ID"])
    return ranks


def _show_new(log: Path, shown: int, open_line: bool, final: bool = False) -> tuple[int, bool]:
    """Print what ``log`` gained since byte ``shown`` (whole lines, or everything when ``final``),
    leaving out MindSpore's log lines and rank 0's error line (reported once, at the end). Returns
    the new ``shown`` and whether what was printed last ends mid-line (a progress bar's ``\\r``),
    ``open_line`` where nothing was."""
    try:
        with open(log, "rb") as handle:
            handle.seek(shown)
            data = handle.read()
    except OSError:
        return shown, open_line
    end = len(data) if final else max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
    for line in re.split(r"(?<=[\n\r])", data[:end].decode(errors="replace")):
        if line and not _MINDSPORE_LOG.match(line) and not line.startswith(ERROR_PREFIX):
            # the worker's stdout and stderr share its log: its one line for stdout is the result's
            (sys.stdout if line.startswith(RESULT_PREFIX) else sys.stderr).write(line)
            open_line = not line.endswith("\n")
    sys.stdout.flush()
    sys.stderr.flush()
    return shown + end, open_line


def _report_failure(logs: Path, devices: int, ranks: dict[int, int]) -> int:
    """One line for a failed run: a worker's own error (bad input: status 2), else which worker died
    and the last thing it said (status 1)."""
    for rank in range(devices):
        text = _read(logs / f"worker_{rank}.log")
        errors = [line for line in text.splitlines() if line.startswith(ERROR_PREFIX)]
        if errors:
            print(errors[-1], file=sys.stderr)
            return 2
    msrun_text = _read(logs / "msrun.log")
    dead = re.findall(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)", msrun_text)
    culprit, why = None, "it stopped"
    if dead:  # the first worker msrun saw end: the others may have failed after it, in their collectives
        pid, status = int(dead[0][0]), int(dead[0][1])
        culprit = ranks.get(pid)
        why = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
    for rank in range(devices) if culprit is None else [culprit]:
        text = _read(logs / f"worker_{rank}.log")
        lines = [line for line in text.splitlines() if line.strip() and not _MINDSPORE_LOG.match(line)]
        if lines and re.match(r"^\w*(Error|Exception)\b", lines[-1]):
            culprit, why = rank, lines[-1]
            break
    who = f"worker {culprit}" if culprit is not None else "a worker"
    print(f"{ERROR_PREFIX} {who} failed ({why[:200]}); the run was stopped and no video was written; "
          f"worker logs in {logs}", file=sys.stderr)
    return 1


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def check_split(config: Any, devices: int) -> None:
    """The backbone must be the parallel one, and its heads and MLP must divide by ``devices``."""
    from plugins.hunyuanvideo_parallel.config import ParallelTransformerConfig, check_divides

    if not isinstance(config, ParallelTransformerConfig):
        raise ValueError(f"--devices {devices}: only {PARALLEL_BACKBONE} splits across processes; leave --backbone "
                         f"out or name it")
    check_divides(config, devices)


def build(plan: Any, defaults: dict[str, Any], policy: str, log: Any, group: Any) -> Any:
    """The pipeline of a checked plan with the roles split across ``group`` (see ``DistributedComponents``)."""
    from zoo.pipeline import TextToVideoPipeline

    components = DistributedComponents(plan, policy, log, group)
    return TextToVideoPipeline(spec=plan.spec, defaults=defaults, components=components)
