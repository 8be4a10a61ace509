"""`difflod simplify`: QEM+bake base, training from its textures, outputs and metrics.

One short end-to-end run through the CLI (spiky asset, 3024 -> 300 triangles,
10 iterations at 32 px) is shared by the output tests; the run that shows
the gain over QEM+bake is marked slow.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from difflod.base.baseline import baseline
from difflod.base.render_tangents import match_render_tangents
from difflod.cli import main
from difflod.config import TrainConfig, load_config
from difflod.errors import ConfigError, DiffLodError, InputFileError
from difflod.models import open_model
from difflod.optimize.trainable import Trainable
from difflod.run.simplify import simplify, simplify_config

REF = "asset:spiky?triangles=3000&texture_res=64"
BUDGET = 300
TINY = {"eval_views": 2, "eval_res": 32, "save_interval": 5, "log_interval": 50}


@pytest.fixture(scope="module")
def ref() -> object:
    return open_model(REF)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CLI run: flags for the main settings, a config file for the rest."""
    root = tmp_path_factory.mktemp("simplify")
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps({**TINY, "learning_rate": [0.003, 0.01]}))
    out = root / "out"
    rc = main(["simplify", REF, "--triangles", str(BUDGET), "-o", str(out), "--config", str(cfg),
               "--iter", "10", "--train-res", "32", "--batch", "2", "--texture-res", "64",
               "--backend", "cpu", "--device", "cpu", "--quiet"])
    assert rc == 0
    return out


def _psnr(metrics: dict, name: str) -> float:
    return float(metrics["candidates"][name]["psnr"]["mean"])


# ---- the short end-to-end run -------------------------------------------------
def test_outputs_exist(run: Path) -> None:
    for name in ("config.json", "history.json", "metrics.json", "mesh.glb", "qem_bake.glb",
                 "checkpoint.pt", "mesh/mesh.obj", "mesh/mesh.mtl", "mesh/texture_kd.png",
                 "mesh/texture_ks.png", "mesh/texture_n.png", "img_000000.png",
                 "img_000010.png", "report"):
        assert (run / name).exists(), name
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 10


def test_config_layers_flags_over_file_over_defaults(run: Path) -> None:
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["iter"] == 10 and cfg["train_res"] == 32 and cfg["batch"] == 2
    assert cfg["texture_res"] == [64, 64] and cfg["eval_views"] == 2
    assert cfg["learning_rate"] == [0.003, 0.01]
    assert cfg["init_textures"] == "base" and cfg["ref_mesh"] == REF
    assert cfg["base_mesh"] is None


def test_budget_met_and_result_in_reference_frame(run: Path, ref: object) -> None:
    from difflod.io import load

    for name in ("mesh.glb", "qem_bake.glb", "mesh/mesh.obj"):
        m = load(run / name)
        assert 0.9 * BUDGET <= m.num_triangles <= BUDGET, name
        lo, hi = m.aabb()
        rlo, rhi = ref.aabb()
        assert torch.allclose(lo, rlo, atol=0.15) and torch.allclose(hi, rhi, atol=0.15), name


def test_metrics_compare_both_candidates(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["candidates"]) == {"qem_bake", "difflod"}
    for name in ("qem_bake", "difflod"):
        assert metrics["candidates"][name]["triangles"] <= BUDGET
        assert 15.0 < _psnr(metrics, name) < 60.0
    assert metrics["reference"]["triangles"] > 3000
    # 10 iterations start from QEM+bake: Adam's first steps jitter every parameter
    # by about the learning rate, so only a sanity bound holds this early (the
    # slow test below checks the gain)
    assert _psnr(metrics, "difflod") > _psnr(metrics, "qem_bake") - 1.5


def test_zero_iterations_reproduce_the_baseline(tmp_path: Path) -> None:
    cfg = simplify_config(None, {**TINY, "iter": 0, "batch": 1, "train_res": 32,
                                 "texture_res": [32, 32], "eval_views": 2, "eval_res": 32,
                                 "save_interval": 0, "backend": "cpu", "device": "cpu"})
    result = simplify(REF, 200, tmp_path / "o", config=cfg, quiet=True)
    assert result.metrics is not None
    assert _psnr(result.metrics, "difflod") == pytest.approx(
        _psnr(result.metrics, "qem_bake"), abs=1e-3)
    assert torch.allclose(result.mesh.v_pos, result.baseline.v_pos, atol=1e-5)
    assert torch.allclose(result.mesh.materials[0].kd, result.baseline.materials[0].kd)


@pytest.mark.slow
def test_optimization_beats_qem_bake(tmp_path: Path) -> None:
    cfg = simplify_config(None, {"iter": 150, "batch": 4, "train_res": 64,
                                 "texture_res": [64, 64], "eval_views": 8, "eval_res": 64,
                                 "save_interval": 0, "backend": "cpu", "device": "cpu"})
    result = simplify(REF, BUDGET, tmp_path / "o", config=cfg, quiet=True)
    assert result.metrics is not None
    # measured: qem_bake 25.39 dB -> difflod 25.91 dB at these tiny settings (64 px);
    # on an H100 at 512 px / 1000 iterations the gain is +6.1 dB (README)
    assert _psnr(result.metrics, "difflod") > _psnr(result.metrics, "qem_bake") + 0.3


# ---- bad input: one-line DiffLodError, before any work --------------------------
@pytest.mark.parametrize("triangles, needle", [
    (3, "must be >= 4"), (3024, "nothing to simplify"), (10**6, "nothing to simplify")])
def test_bad_budget(triangles: int, needle: str, tmp_path: Path) -> None:
    with pytest.raises(DiffLodError, match=needle):
        simplify(REF, triangles, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such model file"):
        simplify(tmp_path / "nope.glb", 100, tmp_path / "o")


def test_base_mesh_in_config_is_refused(tmp_path: Path) -> None:
    cfg = simplify_config(None, {"base_mesh": "asset:sphere"})
    with pytest.raises(ConfigError, match="'base_mesh'"):
        simplify(REF, 100, tmp_path / "o", config=cfg)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["simplify", str(tmp_path / "x.obj"), "--triangles", "50",
                 "-o", str(tmp_path / "o")]) == 2
    assert main(["simplify", REF, "--triangles", "5000", "-o", str(tmp_path / "o")]) == 2
    assert main(["simplify", REF, "--triangles", "50", "-o", str(tmp_path / "o"),
                 "--texture-res", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("difflod: error: ") for line in err)
    assert "x.obj" in err[0] and "nothing to simplify" in err[1] and "texture_res" in err[2]


# ---- configuration -------------------------------------------------------------
def test_simplify_config_defaults_and_layers(tmp_path: Path) -> None:
    c = simplify_config()
    assert (c.iter, c.batch, c.train_res, c.texture_res) == (2000, 8, 512, (1024, 1024))
    assert c.init_textures == "base" and (c.lr_positions, c.lr_textures) == (0.002, 0.01)
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"iter": 5000, "batch": 1, "random_textures": True}))
    c = simplify_config(p, {"batch": 3})
    assert (c.iter, c.batch, c.texture_init) == (5000, 3, "random")
    p.write_text(json.dumps({"iter": 5, "itre": 3}))
    with pytest.raises(ConfigError, match="unknown key 'itre'"):
        simplify_config(p)


@pytest.mark.parametrize("data, needle", [
    ({"init_textures": "noise"}, "'init_textures' must be one of"),
    ({"init_textures": "base", "random_textures": True}, "cannot be 'base'"),
])
def test_init_textures_validation(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(None, data)


def test_texture_init_modes() -> None:
    assert TrainConfig().texture_init == "reference"
    assert TrainConfig(random_textures=True).texture_init == "random"
    assert load_config(None, {"init_textures": "random"}).texture_init == "random"


# ---- the base mesh ---------------------------------------------------------------
@pytest.fixture(scope="module")
def qem(ref: object) -> object:
    return baseline(ref, 200, texture_res=32)


def test_trainable_starts_from_base_textures(ref: object, qem: object) -> None:
    base = match_render_tangents(qem)
    cfg = load_config(None, {"init_textures": "base", "texture_res": [32, 32]})
    tr = Trainable(base, ref, cfg, torch.Generator().manual_seed(0))
    mat = base.materials[0]
    assert torch.equal(tr.textures["kd"].base.detach(), mat.kd)
    assert torch.equal(tr.textures["ks"].base.detach(), mat.ks)
    assert torch.equal(tr.textures["normal"].base.detach(), mat.normal)
    # "reference" keeps nvdiffmodeling's behaviour: the reference's maps, resized
    ref_cfg = load_config(None, {"texture_res": [32, 32]})
    tr_ref = Trainable(base, ref, ref_cfg, torch.Generator().manual_seed(0))
    assert not torch.allclose(tr_ref.textures["kd"].base, mat.kd)
    # a base with alpha trained without layers drops its alpha channel
    rgba = torch.cat([mat.kd, torch.ones_like(mat.kd[..., :1])], -1)
    base4 = base.replace(materials=(dataclasses.replace(mat, kd=rgba),))
    tr4 = Trainable(base4, ref, cfg, torch.Generator().manual_seed(0))
    assert tr4.textures["kd"].base.shape == (32, 32, 3)


def test_match_render_tangents(qem: object) -> None:
    from difflod.geometry.tangents import with_tangents

    fixed = match_render_tangents(qem)
    fresh = with_tangents(qem.replace(v_nrm=None, t_nrm_idx=None, v_tng=None, t_tng_idx=None))
    assert torch.equal(fixed.v_tng, fresh.v_tng) and torch.equal(fixed.v_nrm, fresh.v_nrm)
    n_in, n_out = qem.materials[0].normal, fixed.materials[0].normal
    assert torch.equal(n_out[..., 0::2], n_in[..., 0::2])
    assert torch.equal(n_out[..., 1].abs(), n_in[..., 1].abs())
    # a mesh whose stored tangents already agree is left as it is; one whose
    # handedness is opposite gets its green channel flipped
    same = match_render_tangents(fixed)
    assert torch.equal(same.materials[0].normal, n_out)
    w_flip = torch.tensor([1.0, 1.0, 1.0, -1.0])
    other = match_render_tangents(fixed.replace(v_tng=fixed.v_tng * w_flip))
    assert torch.equal(other.materials[0].normal[..., 1], -n_out[..., 1])
    # without a normal map there is nothing to flip
    plain = qem.replace(materials=(dataclasses.replace(qem.materials[0], normal=None),))
    assert match_render_tangents(plain).materials[0].normal is None


def test_random_textures_start_is_evaluated_and_improved(tmp_path: Path) -> None:
    """init_textures "random": the QEM geometry with noise textures is scored as
    "initial", next to qem_bake, and training moves far above it."""
    cfg = simplify_config(None, {**TINY, "init_textures": "random", "iter": 30, "batch": 2,
                                 "train_res": 32, "texture_res": [32, 32], "eval_views": 4,
                                 "save_interval": 0, "learning_rate": [0.002, 0.03],
                                 "backend": "cpu", "device": "cpu"})
    result = simplify(REF, BUDGET, tmp_path / "o", config=cfg, quiet=True)
    assert result.metrics is not None
    assert set(result.metrics["candidates"]) == {"initial", "qem_bake", "difflod"}
    # measured: initial ~16 dB, qem_bake ~25 dB, difflod after 30 steps ~21 dB
    assert _psnr(result.metrics, "difflod") > _psnr(result.metrics, "initial") + 2.0
    assert _psnr(result.metrics, "initial") < _psnr(result.metrics, "qem_bake") - 3.0
