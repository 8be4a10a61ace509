"""LOD chains (`difflod simplify --triangles 400,100,30`, run/lod.py).

One short chain through the CLI is shared by the output tests; a second,
two-level chain is compared with the separate `simplify` run of its coarser
level: the levels of a chain share reference renders, which must change
nothing (same seed, same views: the same result, bit for bit).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from difflod.cli import main
from difflod.errors import DiffLodError
from difflod.io import load
from difflod.models import open_model
from difflod.optimize.reference_renders import ReferenceRenders
from difflod.run.lod import check_budgets, screen_coverage, simplify_chain
from difflod.run.simplify import simplify, simplify_config
from difflod.scene.views import fixed_views

REF = "asset:spiky?triangles=3000&texture_res=64"
LEVELS = [400, 100, 30]
ITER = 30
SMALL = {"iter": ITER, "train_res": 64, "batch": 2, "texture_res": [64, 64],
         "eval_views": 4, "eval_res": 64, "save_interval": 10, "log_interval": 50,
         "backend": "cpu", "device": "cpu", "learning_rate": [0.003, 0.01],
         "relative_laplacian": True}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lod")
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps(SMALL))
    out = root / "out"
    # levels given coarsest first: the chain orders them itself
    rc = main(["simplify", REF, "--triangles", "30,400,100", "-o", str(out),
               "--config", str(cfg), "--quiet"])
    assert rc == 0
    return out


def test_every_level_is_written(chain: Path) -> None:
    for i in range(len(LEVELS)):
        for name in ("config.json", "history.json", "mesh.glb", "qem_bake.glb",
                     "mesh/mesh.obj", "img_000000.png", f"img_{ITER:06d}.png"):
            assert (chain / f"lod{i}" / name).exists(), (i, name)
        assert not (chain / f"lod{i}" / "metrics.json").exists()
        assert not (chain / f"lod{i}" / "checkpoint.pt").exists()  # a finished run keeps none
    assert (chain / "report" / "report.html").exists()


def test_chain_glb_holds_the_levels_finest_first(chain: Path) -> None:
    counts = [load(chain / "lods.glb", lod=i).num_triangles for i in range(len(LEVELS))]
    assert counts == [load(chain / f"lod{i}" / "mesh.glb").num_triangles
                      for i in range(len(LEVELS))]
    # QEM may stop a few triangles short of a budget, never above it
    assert all(b - 4 <= c <= b for b, c in zip(LEVELS, counts)), counts


def test_one_report_over_the_chain_and_every_level_gains(chain: Path) -> None:
    metrics = json.loads((chain / "metrics.json").read_text())
    cands = metrics["candidates"]
    assert sorted(cands) == sorted([f"{k}_lod{i}" for i in range(3)
                                    for k in ("qem_bake", "difflod")])
    # measured after 30 iterations (seed 0, 4 views at 64 px): +0.44, +0.90, +1.45 dB
    for i in range(len(LEVELS)):
        gain = cands[f"difflod_lod{i}"]["psnr"]["mean"] - cands[f"qem_bake_lod{i}"]["psnr"]["mean"]
        assert gain > 0.2, (i, gain)
    levels = metrics["levels"]
    assert [lv["budget"] for lv in levels] == LEVELS
    assert [lv["start"] for lv in levels] == ["qem"] * len(LEVELS)  # a spiky model keeps QEM
    assert [lv["screen_coverage"] for lv in levels] == screen_coverage(
        [lv["triangles"] for lv in levels])
    # one reference render per step serves the three levels
    assert metrics["reference_renders"] == {"rendered": ITER, "reused": 2 * ITER}
    assert set(metrics["timings"]) == {"base_mesh_s", "train_s", "evaluate_s", "report_s"}


def test_a_level_equals_its_separate_run(tmp_path: Path) -> None:
    config = simplify_config(None, {**SMALL, "iter": 6, "save_interval": 0})
    ref = open_model(REF)
    chain = simplify_chain(ref, [200, 60], tmp_path / "chain", config=config, quiet=True,
                           evaluate=False)
    alone = simplify(ref, 60, tmp_path / "alone", config=config, quiet=True, evaluate=False)
    got, want = chain.levels[1].mesh, alone.mesh
    assert torch.equal(got.v_pos, want.v_pos)
    assert torch.equal(got.materials[0].kd, want.materials[0].kd)
    assert torch.equal(got.materials[0].ks, want.materials[0].ks)
    assert torch.equal(got.materials[0].normal, want.materials[0].normal)


def test_reference_renders_reuse_only_identical_inputs() -> None:
    ref = open_model(REF)
    cache = ReferenceRenders(capacity=2)
    views, other = fixed_views(2, seed=0), fixed_views(2, seed=1)
    bg = torch.zeros(2, 8, 8, 3)
    calls = []

    def render(tag: str):
        return lambda: calls.append(tag) or torch.full((2, 8, 8, 3), float(len(calls)))

    first = cache.get(ref, views, bg, None, 1, render("a"))
    assert torch.equal(cache.get(ref, views, bg.clone(), None, 1, render("b")), first)
    cache.get(ref, other, bg, None, 1, render("c"))        # other views
    cache.get(ref, views, bg + 1.0, None, 1, render("d"))  # other background
    cache.get(ref, views, bg, 0.5, 1, render("e"))         # another pose time
    cache.get(ref, views, bg, None, 4, render("f"))        # other sample count
    assert calls == ["a", "c", "d", "e", "f"]
    assert (cache.renders, cache.reuses) == (5, 1)


def test_budgets_are_checked() -> None:
    ref = open_model(REF)
    assert check_budgets([30, 400, 100], ref, "m") == [400, 100, 30]
    with pytest.raises(DiffLodError, match="repeat a level"):
        check_budgets([100, 100], ref, "m")
    with pytest.raises(DiffLodError, match="at least 2 budgets"):
        check_budgets([100], ref, "m")
    with pytest.raises(DiffLodError, match="leaves nothing to simplify"):
        check_budgets([100, 5000], ref, "m")


def test_a_second_chain_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    from difflod.errors import OutputInUseError
    from difflod.run.lock import output_lock

    config = simplify_config(None, {**SMALL, "iter": 1})
    with output_lock(tmp_path / "busy"), pytest.raises(OutputInUseError):
        simplify_chain(REF, [200, 60], tmp_path / "busy", config=config, quiet=True,
                       evaluate=False)
    assert not (tmp_path / "busy" / "lod0").exists()


def test_screen_coverage() -> None:
    assert screen_coverage([20000, 5000, 1000]) == [0.25, 0.05, 0.0]


def test_bad_triangle_list_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse's usage errors exit 2 themselves
        main(["simplify", REF, "--triangles", "400,abc", "-o", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "comma-separated list of counts" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_killed_chain_resumes_to_the_files_of_an_uninterrupted_one(
        chain: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Stopped mid-training (after every level's first checkpoint), `--resume`
    ends with the uninterrupted chain's files, byte for byte; a second
    `--resume` finds the finished chain and rewrites nothing."""
    from difflod.optimize.trainer import Trainer

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(SMALL))
    out = tmp_path / "out"
    args = ["simplify", REF, "--triangles", "30,400,100", "-o", str(out), "--config", str(cfg),
            "--quiet"]
    advance, calls = Trainer.advance, []

    def dies(self: Trainer) -> dict:
        calls.append(self.iteration)
        if len(calls) > 3 * 15:  # every level is at iteration 15: checkpoints at 10
            raise KeyboardInterrupt
        return advance(self)

    monkeypatch.setattr(Trainer, "advance", dies)
    assert main(args) == 130  # "difflod: interrupted"
    monkeypatch.setattr(Trainer, "advance", advance)
    assert all((out / f"lod{i}" / "checkpoint.pt").is_file() for i in range(3))
    assert not (out / "lods.glb").exists()

    assert main([*args, "--resume"]) == 0
    for name in ["lods.glb"] + [f"lod{i}/{f}" for i in range(3)
                                for f in ("mesh.glb", "qem_bake.glb", "history.json")]:
        got, want = (out / name).read_bytes(), (chain / name).read_bytes()
        if name.endswith(".json"):  # history records hold host milliseconds
            got_h, want_h = json.loads(got), json.loads(want)
            for record in (*got_h, *want_h):
                record.pop("ms")
            assert got_h == want_h, name
        else:
            assert got == want, name
    assert not list(out.glob("lod*/checkpoint.pt"))
    got_m = json.loads((out / "metrics.json").read_text())["candidates"]
    want_m = json.loads((chain / "metrics.json").read_text())["candidates"]
    assert {k: v["psnr"] for k, v in got_m.items()} == {k: v["psnr"] for k, v in want_m.items()}

    stamp = (out / "lods.glb").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args[:-1], "--resume"]) == 0  # not --quiet: the line is printed
    assert "holds the finished chain: nothing to resume" in capsys.readouterr().err
    assert (out / "lods.glb").stat().st_mtime_ns == stamp
