"""`difflod batch` on the local process pool: results, failures, resuming, the report.

One batch through the CLI (a tiny procedural model, another as an LOD chain
of two levels, a corrupt OBJ and a fraction too small for its model; 5-6
iterations at 32 px) is shared by the
tests (marked slow: about two minutes on a busy 2-core CPU, spawn and import
included); its re-run checks that complete models are skipped and a
half-written one is redone from scratch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import queue
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from difflod.cli import main
from difflod.run.batch import plan
from difflod.run.batch_model import RECORD, read_record
from difflod.run.batch_pool import PoolShape, _init_worker, make_executor, pool_shape
from difflod.run.manifest import read_jobs
from difflod.run.simplify import simplify_config

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                        else None)
#: tiny runs: the batch's plumbing is under test, not the optimization
TINY = {"iter": 5, "train_res": 32, "batch": 1, "texture_res": [32, 32], "eval_views": 2,
        "eval_res": 32, "save_interval": 100, "log_interval": 100, "backend": "cpu",
        "device": "cpu"}
SPHERE, SPIKY = "asset_sphere_triangles_400_texture_res_32", "spiky"


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The first run: (OUT, exit code)."""
    root = tmp_path_factory.mktemp("batch")
    (root / "cfg.json").write_text(json.dumps(TINY))
    (root / "models").mkdir()
    (root / "models" / "broken.obj").write_text("v 0 0 0\nf 1 2 9\n")
    (root / "m.csv").write_text(
        "model,triangles,iter,name\n"
        "asset:sphere?triangles=400&texture_res=32,25%,,\n"
        "models/broken.obj,100,,\n"
        "asset:spiky?triangles=400&texture_res=32,\"60,150\",6,spiky\n"
        "asset:knot?triangles=400&texture_res=32,0.5%,,tiny\n")
    out = root / "out"
    # a half-written result of an earlier, killed run: no completion record
    (out / SPHERE).mkdir(parents=True)
    (out / SPHERE / "mesh.glb").write_bytes(b"half")
    rc = main(["batch", str(root / "m.csv"), "-o", str(out), "--config", str(root / "cfg.json"),
               "--workers", "2", "--threads", "1", "--quiet"])
    return out, rc


def _summary(out: Path) -> list[dict[str, str]]:
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_results_and_failures(first: tuple[Path, int]) -> None:
    out, rc = first
    assert rc == 1  # a model failed
    rows = _summary(out)
    assert [r["name"] for r in rows[:2]] == ["models__broken", "tiny"]  # failures first
    assert rows[0]["status"] == "failed" and re.fullmatch(
        r".*broken\.obj: line 2: vertex index 2 out of range \(1 defined so far\)", rows[0]["error"])
    # 0.5% of the knot's 400 triangles is 2: below simplify's 4, that model's error only
    assert rows[1]["error"] == ("asset:knot?triangles=400&texture_res=32: budget 0.5% is 2 "
                                "triangles, outside [4, 400) for its 400 triangles")
    assert not (out / "models__broken" / RECORD).exists()
    ok = rows[2:]
    assert sorted((r["name"], r["lod"]) for r in ok) == [(SPHERE, "0"), (SPIKY, "0"), (SPIKY, "1")]
    # worst first: by difflod's held-out PSNR, lowest first
    assert float(ok[0]["difflod_psnr"]) <= float(ok[1]["difflod_psnr"])
    for row in ok:
        folder = out / row["name"]
        record = json.loads((folder / RECORD).read_text())
        cands = json.loads((folder / "metrics.json").read_text())["candidates"]
        # a chain's level K is candidate "<name>_lodK" of its one metrics.json, its files
        # in lodK/; a single model's are "<name>" and its own folder
        suffix, files = (f"_lod{row['lod']}", folder / f"lod{row['lod']}") \
            if row["name"] == SPIKY else ("", folder)
        # the summary holds each model's own metrics.json values (rounded to 1e-4)
        for cand in ("qem_bake", "difflod"):
            for key in ("psnr", "ssim", "flip"):
                assert float(row[f"{cand}_{key}"]) == pytest.approx(
                    cands[cand + suffix][key]["mean"], abs=1e-4)
        gain = cands["difflod" + suffix]["psnr"]["mean"] - cands["qem_bake" + suffix]["psnr"]["mean"]
        assert float(row["gain_db"]) == pytest.approx(gain, abs=1e-4)
        assert int(row["difflod_bytes"]) == (files / "mesh.glb").stat().st_size
        assert int(row["qem_bake_bytes"]) == (files / "qem_bake.glb").stat().st_size
        assert int(row["triangles"]) <= int(row["budget"])
        assert float(row["seconds"]) == pytest.approx(record["seconds"], abs=1e-4)
    budgets = {(r["name"], r["lod"]): r["budget"] for r in ok}
    # 25% of the sphere's 400 triangles; the chain's levels finest first whatever the order
    # given ("60,150"), and the row's own iteration count reached both levels
    assert budgets == {(SPHERE, "0"): "100", (SPIKY, "0"): "150", (SPIKY, "1"): "60"}
    assert (out / SPIKY / "lods.glb").is_file()
    for lod in (0, 1):
        assert json.loads((out / SPIKY / f"lod{lod}" / "config.json").read_text())["iter"] == 6
        assert len(json.loads((out / SPIKY / f"lod{lod}" / "history.json").read_text())) == 6
    # the half-written folder was replaced, not mixed in
    assert (out / SPHERE / "mesh.glb").read_bytes()[:4] == b"glTF"
    assert not list(out.rglob(".*tmp*")), "temporary files left behind"


@pytest.mark.slow
def test_rerun_skips_complete_models_and_redoes_half_written_ones(
        first: tuple[Path, int], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = first
    root = out.parent
    kept = (out / SPIKY / RECORD).stat().st_mtime_ns, (out / SPIKY / "lods.glb").stat().st_mtime_ns
    # the sphere's run "was killed" after its files but before its record
    (out / SPHERE / RECORD).unlink()
    (out / SPHERE / "stale.txt").write_text("from the killed run")
    capsys.readouterr()
    rc = main(["batch", str(root / "m.csv"), "-o", str(out), "--config", str(root / "cfg.json"),
               "--workers", "1", "--quiet"])
    stdout = capsys.readouterr().out
    assert rc == 1
    assert "(1 completed, 1 already complete, 2 failed;" in stdout
    assert ((out / SPIKY / RECORD).stat().st_mtime_ns,
            (out / SPIKY / "lods.glb").stat().st_mtime_ns) == kept
    assert read_record(out / SPHERE) is not None
    assert not (out / SPHERE / "stale.txt").exists()
    assert sorted(r["name"] for r in _summary(out)) == sorted(  # the chain: a row per level
        ["models__broken", "tiny", SPHERE, SPIKY, SPIKY])


@pytest.mark.slow
def test_a_changed_budget_or_setting_is_not_complete(first: tuple[Path, int]) -> None:
    out, _ = first
    root = out.parent
    jobs = read_jobs(root / "m.csv")
    configs = [simplify_config(root / "cfg.json", dict(j.settings)) for j in jobs]
    todo, done = plan(jobs, configs, out)
    assert sorted(r["name"] for r in done) == [SPHERE, SPIKY]
    configs[2] = configs[2].replace(seed=1)  # the spiky model, another seed
    todo, done = plan(jobs, configs, out)
    assert [r["name"] for r in done] == [SPHERE]
    assert SPIKY in [j.name for j, _ in todo]
    (root / "m2.csv").write_text((root / "m.csv").read_text().replace('"60,150"', '"60,120"'))
    jobs = read_jobs(root / "m2.csv")
    configs = [simplify_config(root / "cfg.json", dict(j.settings)) for j in jobs]
    assert SPIKY in [j.name for j, _ in plan(jobs, configs, out)[0]]


_CHECK = """<script>
window.addEventListener('error', e => { document.title = 'JSERROR ' + e.message; }, true);
window.addEventListener('load', () => {
  const pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = Array.from(document.querySelectorAll('h2')).map(h => h.textContent)
    .join('|') + '#' + Array.from(document.querySelectorAll('table')).map(
      t => t.rows.length).join(',');
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.slow
def test_report_page_in_headless_chromium(first: tuple[Path, int], tmp_path: Path,
                                          require_tool: Callable[..., None]) -> None:
    require_tool(CHROMIUM is not None, "chromium (for the browser check of report.html)",
                 "apt-get install chromium")
    assert CHROMIUM is not None
    out, _ = first
    page = out / "report.html"
    text = page.read_text()
    assert text.index("models__broken") < text.index(SPHERE)  # failures above the results
    assert "vertex index 2 out of range" in text
    for name, links in ((SPHERE, 1), (SPIKY, 2)):  # the chain: a row per level
        assert text.count(f"href='{name}/report/report.html'") == links
        assert (out / name / "report" / "report.html").is_file()
    probe = out / "probe.html"
    probe.write_text(text.replace("</body>", _CHECK + "</body>"))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=3000"]
    dom = subprocess.run(flags + ["--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120, check=False)
    probe.unlink()
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r"<pre id=\"probe\">([^<]*)</pre>", dom.stdout)
    assert m, "probe script did not run"
    heads, rows = m.group(1).split("#")
    assert heads == "Totals|Failed (2)|Results, worst first (held-out PSNR of difflod)"
    # totals: 9 lines; failures: a header and 2 rows; results: a header and 3 rows
    assert rows == "9,3,4"
    assert "<title>JSERROR" not in dom.stdout
    shot = tmp_path / "shot.png"
    run = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1300,700",
                                  page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    # the error line is drawn in red (#b00): some pixels are clearly red
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 50


# ---- the pool's shape -----------------------------------------------------------
@pytest.mark.parametrize("workers, jobs, gpus, cores, expect", [
    (None, 100, 0, 16, PoolShape(4, 4, 0)),   # one CPU worker per 4 cores
    (None, 100, 0, 2, PoolShape(1, 2, 0)),
    (3, 100, 0, 16, PoolShape(3, 5, 0)),      # 3 x 5 <= 16
    (None, 2, 0, 16, PoolShape(2, 8, 0)),     # no more workers than models
    (None, 100, 8, 128, PoolShape(8, 16, 8)),  # one worker per GPU
    (2, 100, 8, 128, PoolShape(2, 64, 2)),
])
def test_pool_shape(workers: int | None, jobs: int, gpus: int, cores: int,
                    expect: PoolShape) -> None:
    shape = pool_shape(workers, jobs, gpus=gpus, cores=cores)
    assert shape == expect
    assert shape.workers * shape.threads <= cores


def test_pool_shape_errors() -> None:
    from difflod.errors import DiffLodError

    with pytest.raises(DiffLodError, match=r"--workers 3: this machine has 2 GPU\(s\)"):
        pool_shape(3, 10, gpus=2, cores=8)


def test_worker_initializer_pins_a_gpu_and_caps_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    for key in ("CUDA_VISIBLE_DEVICES", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    q: queue.Queue[int] = queue.Queue()
    q.put(1)
    try:
        _init_worker(1, q)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
        assert os.environ["NUMBA_NUM_THREADS"] == "1" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_pool_workers_run_with_their_thread_count() -> None:
    """A spawned worker's torch pool has the shape's threads, whatever the parent has."""
    with make_executor(PoolShape(workers=1, threads=1, gpus=0)) as pool:
        assert pool.submit(torch.get_num_threads).result(timeout=300) == 1
        assert pool.submit(os.getenv, "NUMBA_NUM_THREADS").result(timeout=60) == "1"


def test_report_rows_handle_infinite_psnr(tmp_path: Path) -> None:
    """metrics.json writes an identical picture's PSNR as "inf"; the summary keeps it."""
    from difflod.run.batch_report import write_summary

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "metrics.json").write_text(json.dumps({
        "reference": {"triangles": 40},
        "candidates": {n: {"triangles": 10, "file_bytes": 100, "psnr": {"mean": "inf"},
                           "ssim": {"mean": 1.0}, "flip": {"mean": 0.0}}
                       for n in ("qem_bake", "difflod")}}))
    rows = write_summary(tmp_path, [{"name": "m", "model": "x", "status": "ok", "seconds": 1.0,
                                     "budgets": [10]}])
    assert math.isinf(rows[0]["difflod_psnr"]) and "gain_db" not in rows[0]
    assert "∞" in (tmp_path / "report.html").read_text()
    assert _summary(tmp_path)[0]["difflod_psnr"] == "inf"


def test_report_rows_of_an_lod_chain(tmp_path: Path) -> None:
    """A chain's one metrics.json names its levels' candidates qem_bake_lodK / difflod_lodK
    (run/lod.py): one row each, with its own budget, worst first across all models."""
    from difflod.run.batch_report import write_summary

    cands = {}
    for lod, (q, d, t) in enumerate([(30.0, 31.5, 400), (24.0, 23.0, 40)]):
        cands[f"qem_bake_lod{lod}"] = {"triangles": t, "file_bytes": 10 * t, "psnr": {"mean": q}}
        cands[f"difflod_lod{lod}"] = {"triangles": t, "file_bytes": 12 * t, "psnr": {"mean": d}}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "metrics.json").write_text(json.dumps(
        {"reference": {"triangles": 4000}, "candidates": cands}))
    rows = write_summary(tmp_path, [{"name": "c", "model": "c.glb", "status": "ok",
                                     "seconds": 9.0, "budgets": [400, 40]}])
    assert [(r["lod"], r["budget"], r["triangles"]) for r in rows] == [(1, 40, 40), (0, 400, 400)]
    assert [r["gain_db"] for r in rows] == [pytest.approx(-1.0), pytest.approx(1.5)]
    assert rows[0]["difflod_bytes"] == 480 and rows[1]["qem_bake_bytes"] == 4000
    page = (tmp_path / "report.html").read_text()
    assert page.count("href='c/report/report.html'") == 2
    assert "<tr class=worse>" in page  # LOD 1 lost 1 dB to QEM + bake


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_cpu_kernels_are_compiled_once_before_the_workers_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        backend: str) -> None:
    """A local CPU pool: the parent readies a step's CPU kernels (render.backends.warm_up,
    its notice through the bar) before the pool runs; not when no model uses them."""
    import difflod.render.backends as backends
    import difflod.run.batch_pool as batch_pool
    from difflod.run.batch import batch

    calls: list = []

    def warm_up(name, device, *, train, on_compile=None):
        calls.append((name, str(device), train))
        on_compile(27, 2)

    monkeypatch.setattr(backends, "warm_up", warm_up)
    monkeypatch.setattr(batch_pool, "run_pool", lambda *a, **k: calls.append("pool"))
    (tmp_path / "m.csv").write_text("model,triangles\nasset:sphere?triangles=400,100\n")
    batch(tmp_path / "m.csv", tmp_path / "out", overrides={**TINY, "backend": backend},
          workers=1)
    if backend == "torch":
        assert calls == ["pool"]
        return
    assert calls == [("cpu", "cpu", True), "pool"]
    assert "compiling 27 CPU kernels in 2 processes (first run only; cached after)…" in \
        capsys.readouterr().err
