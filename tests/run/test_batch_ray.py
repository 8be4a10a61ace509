"""`difflod batch --ray` on a real two-node Ray cluster of this machine.

The fixture starts a head (`ray start --head`, no dashboard, 1 CPU) and a
worker node (`ray start --address`, 1 CPU) in a temporary folder of their
own, with a token of its own (Ray's token authentication), and on
teardown kills exactly that cluster's processes by id (those whose command
line names its folder, and their children); `ray stop` would stop every
Ray process of the machine.

One batch: three tiny models and a corrupt one. A worker is killed in the
middle of a model with no retries allowed: that model is recorded as
failed with Ray's reason, every other completes. The re-run skips the
complete ones and redoes the killed one, whose worker is killed again and
retried by Ray, so it completes in that same run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from difflod.run.batch_model import RECORD, read_record

pytestmark = pytest.mark.slow

TINY = {"iter": 8, "train_res": 32, "batch": 1, "texture_res": [32, 32], "eval_views": 2,
        "eval_res": 32, "save_interval": 100, "log_interval": 100, "backend": "cpu",
        "device": "cpu"}
MODELS = ("sphere", "spiky", "knot")
TASK_TITLE = "ray::_ray_simplify"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


class Cluster:
    def __init__(self, folder: Path, address: str, env: dict[str, str]) -> None:
        self.folder, self.address, self.env = folder, address, env

    def own(self) -> list[int]:
        """This cluster's daemons: their command lines name its folder."""
        return [p for p in _pids() if str(self.folder) in _cmdline(p)]

    def task_workers(self) -> list[int]:
        """Workers of this cluster running a batch task now (Ray titles them by task)."""
        own = set(self.own())
        return [p for p in _pids() if _cmdline(p).startswith(TASK_TITLE) and _parent(p) in own]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="dlray", dir="/tmp"))  # short: Ray's socket paths
    port = _free_port()
    # token authentication with a token of this cluster's own (Ray >= 2.5x binds every
    # interface; a token left in ~/.ray by another local instance must not decide)
    token = folder / "token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str(folder),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    ray_cli = str(Path(sys.executable).parent / "ray")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0"]
    try:
        for args in (["--head", f"--port={port}", "--include-dashboard=false",
                      f"--temp-dir={folder}", "--disable-usage-stats"],
                     [f"--address=127.0.0.1:{port}"]):
            started = subprocess.run([ray_cli, "start", *args, *common], env=env, text=True,
                                     capture_output=True, timeout=180, check=False)
            assert started.returncode == 0, (args, started.stdout[-2000:], started.stderr[-3000:])
        yield Cluster(folder, f"127.0.0.1:{port}", env)
    finally:
        stop = Cluster(folder, "", env)
        daemons = stop.own()
        children = [p for p in _pids() if _parent(p) in set(daemons)]
        for pid in children + daemons:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


def _batch(cluster: Cluster, root: Path, retries: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "difflod", "batch", str(root / "m.json"), "-o", str(root / "out"),
         "--config", str(root / "cfg.json"), "--ray", cluster.address, "--retries", str(retries),
         "--quiet"], env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_a_running_task(cluster: Cluster, proc: subprocess.Popen[str]) -> int:
    """SIGKILL a worker seen running a batch task twice, 1.5 s apart (so in mid-model)."""
    seen: set[int] = set()
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        now = set(cluster.task_workers())
        both = now & seen
        if both:
            pid = min(both)
            os.kill(pid, signal.SIGKILL)
            return pid
        seen = now
        time.sleep(1.5)
    raise AssertionError(f"no task ran long enough to be killed: {proc.communicate()}")


def test_killed_worker_and_corrupt_model_then_resume(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / "cfg.json").write_text(json.dumps(TINY))
    (tmp_path / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    rows = [{"model": f"asset:{m}?triangles=400&texture_res=32", "name": m, "triangles": 100}
            for m in MODELS] + [{"model": "broken.glb", "triangles": 100}]
    (tmp_path / "m.json").write_text(json.dumps(rows))
    out = tmp_path / "out"

    proc = _batch(cluster, tmp_path, retries=0)
    _kill_a_running_task(cluster, proc)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr[-3000:]
    summary = (out / "summary.csv").read_text()
    failed = [m for m in MODELS if read_record(out / m) is None]
    assert len(failed) == 1, (failed, stdout, stderr[-2000:])
    killed = failed[0]
    # every other model completed, with its own metrics
    for m in set(MODELS) - {killed}:
        assert (out / m / "metrics.json").is_file() and (out / m / RECORD).is_file()
    assert "(2 completed, 0 already complete, 2 failed;" in stdout
    errors = dict(line.split(" failed: ", 1) for line in stderr.splitlines()
                  if line.startswith("difflod: ") and " failed: " in line)
    assert set(errors) == {"difflod: broken", f"difflod: {killed}"}, stderr[-2000:]
    assert "broken.glb" in errors["difflod: broken"]  # the loader's one line, not retried
    assert errors[f"difflod: {killed}"].startswith("ray: "), errors
    assert "died" in errors[f"difflod: {killed}"] or "crash" in errors[f"difflod: {killed}"]
    assert f"{killed},asset:{killed}" in summary and "ray: " in summary
    kept = {m: (out / m / RECORD).stat().st_mtime_ns for m in set(MODELS) - {killed}}

    # the re-run: complete models skipped; the killed one redone, and killed once more
    # on the way, which Ray retries (retries 2) within the run
    proc = _batch(cluster, tmp_path, retries=2)
    _kill_a_running_task(cluster, proc)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr[-3000:]  # the corrupt model still fails
    assert "(1 completed, 2 already complete, 1 failed;" in stdout, (stdout, stderr[-2000:])
    assert read_record(out / killed) is not None
    assert {m: (out / m / RECORD).stat().st_mtime_ns for m in kept} == kept
