"""run/eval.py: the evaluation's device, checked with the backend before any model opens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflod.errors import BackendError
from difflod.run.eval import eval_device, evaluate_models


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_auto_is_the_gpu_when_torch_sees_one_unless_the_backend_says_cpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 0)
    assert eval_device("auto", None) == torch.device("cpu")
    assert eval_device(None, "torch") == torch.device("cpu")
    _gpus(monkeypatch, 2)
    assert eval_device("auto", None) == torch.device("cuda")
    assert eval_device("auto", "auto") == torch.device("cuda")
    assert eval_device("auto", "cpu") == torch.device("cpu")
    assert eval_device("CUDA:1", "cuda") == torch.device("cuda", 1)
    assert eval_device("cpu", "torch") == torch.device("cpu")


@pytest.mark.parametrize("gpus, device, backend, message", [
    (0, "cuda", None, "--device cuda: torch sees no CUDA GPU here; use --device cpu"),
    (0, "auto", "cuda", "--device cuda: torch sees no CUDA GPU here; use --device cpu"),
    (1, "cuda:3", None, r"--device cuda:3: torch sees 1 GPU\(s\), cuda:0 to cuda:0"),
    (1, "cpu", "cuda", (r"--backend cuda renders on the GPU, but --device is cpu: use "
                       r"--device cuda \(or auto\), or --backend cpu or torch")),
    (1, "cuda:0", "cpu", (r"--backend cpu renders on the CPU, but --device is cuda:0: use "
                         r"--device cpu \(or auto\), or --backend cuda or torch")),
    (1, "gpu", None, "--device 'gpu': expected auto, cpu, cuda or cuda:N"),
    (1, "cuda:x", None, "--device 'cuda:x': expected auto, cpu, cuda or cuda:N"),
])
def test_devices_that_cannot_be_used_are_one_clear_line(
        monkeypatch: pytest.MonkeyPatch, gpus: int, device: str, backend: str | None,
        message: str) -> None:
    _gpus(monkeypatch, gpus)
    with pytest.raises(BackendError, match=f"^{message}$"):
        eval_device(device, backend)


def test_the_device_is_checked_before_any_model_is_opened(tmp_path: Path) -> None:
    # the missing files would be an InputFileError: the device's error comes first
    with pytest.raises(BackendError, match="--device 'tpu'"):
        evaluate_models(str(tmp_path / "nope.obj"), [str(tmp_path / "none.obj")],
                        device="tpu")


def test_eval_on_the_gpu_writes_what_the_cpu_writes(cuda: torch.device, tmp_path: Path) -> None:
    import json

    ref, cand = "asset:spiky?triangles=3000&texture_res=64", "asset:sphere?triangles=400"
    runs = {}
    for dev in ("cuda", "cpu"):
        evaluate_models(ref, [cand], out=tmp_path / dev, views=3, res=64, device=dev)
        runs[dev] = json.loads((tmp_path / dev / "metrics.json").read_text())
        assert (tmp_path / dev / "report" / "report.html").is_file()
    assert runs["cuda"]["settings"]["device"].startswith("cuda")
    assert runs["cpu"]["settings"]["device"] == "cpu"
    g, c = runs["cuda"]["candidates"][cand], runs["cpu"]["candidates"][cand]
    # bounds of tests/evaluate/test_evaluate.py::test_evaluate_on_the_gpu_equals_the_cpu
    assert g["psnr"]["mean"] == pytest.approx(c["psnr"]["mean"], abs=0.05)
    for key in ("ssim", "flip", "iou"):
        assert g[key]["mean"] == pytest.approx(c[key]["mean"], abs=2e-3)
    assert g["chamfer"] == pytest.approx(c["chamfer"], abs=1e-6)


def test_eval_into_a_folder_another_run_holds_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`difflod eval -o OUT` takes OUT's lock as runs do: while another process
    holds it, eval stops with one line (exit 2) and writes nothing there."""
    from difflod.cli import main
    from difflod.run.lock import output_lock

    out = tmp_path / "busy"
    with output_lock(out):
        rc = main(["eval", "asset:sphere?triangles=400", "asset:sphere?triangles=100",
                   "-o", str(out), "--views", "1", "--res", "16", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "another difflod run is writing into this folder" in err[0]
    assert sorted(p.name for p in out.iterdir()) == [".difflod.lock"]


def test_a_first_runs_compile_is_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    """`difflod eval` scores inside compile_notice: a first run's numba compile (the
    render kernels compiled ahead, render.backends.warm_up) prints its one line."""
    import contextlib

    from difflod.evaluate import report
    from difflod.optimize import progress

    seen = []

    @contextlib.contextmanager
    def notice(*a, **k):
        seen.append("enter")
        yield
        seen.append("exit")

    monkeypatch.setattr(progress, "compile_notice", notice)
    monkeypatch.setattr(report, "evaluate_into", lambda *a, **k: seen.append("eval") or {})
    evaluate_models("asset:sphere?triangles=100", ["asset:sphere?triangles=100"], views=1,
                    res=16, device="cpu")
    assert seen == ["enter", "eval", "exit"]
