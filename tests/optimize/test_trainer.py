"""The training loop on small procedural scenes: every option does what it says.

Scenes are tiny (32-64 px, 32-64 texel textures, a few iterations) so the
whole file runs in about a minute on two cores; the quality test is marked
slow but still runs in CI.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from difflod.config import TrainConfig, load_config
from difflod.errors import ConfigError, DiffLodError
from difflod.evaluate.evaluate import evaluate
from difflod.models import open_model
from difflod.optimize.checkpoint import mesh_digest
from difflod.optimize.trainer import Trainer, prepare_meshes
from difflod.run.train import train

BASE = {"ref_mesh": "asset:sphere?triangles=1500&texture_res=64",
        "base_mesh": "asset:sphere?triangles=200&texture_res=32",
        "iter": 4, "batch": 2, "train_res": 32, "texture_res": [32, 32], "save_interval": 0,
        "eval_views": 2, "eval_res": 32, "backend": "cpu", "device": "cpu"}


def make(**changes: object) -> TrainConfig:
    return load_config(None, {**BASE, **changes})



@pytest.mark.slow
def test_training_improves_held_out_psnr(tmp_path: Path) -> None:
    cfg = make(iter=60, train_res=64, texture_res=[64, 64], random_textures=True,
               learning_rate=[0.01, 0.05], eval_views=4, eval_res=64)
    result = train(cfg, out_root=tmp_path, quiet=True)
    m = result.metrics["candidates"]
    assert m["difflod"]["psnr"]["mean"] > m["initial"]["psnr"]["mean"] + 3.0
    out = result.out_dir
    for name in ("config.json", "history.json", "metrics.json", "mesh.glb",
                 "mesh/mesh.obj", "mesh/mesh.mtl", "mesh/texture_kd.png", "mesh/texture_ks.png",
                 "mesh/texture_n.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()  # a finished run keeps none (keep_checkpoint)
    # the written model is in the reference's own frame and loads back
    from difflod.io import load

    back = load(out / "mesh.glb")
    assert back.num_triangles == result.mesh.num_triangles
    ref = open_model(cfg.ref_mesh)
    lo, hi = ref.aabb()
    blo, bhi = back.aabb()
    assert torch.allclose(blo, lo, atol=0.15) and torch.allclose(bhi, hi, atol=0.15)


def test_skip_train_freezes_parameters(tmp_path: Path, trainer_for) -> None:
    tr = trainer_for(make(skip_train=["position", "kd"]), tmp_path)
    pos0 = tr.trainable.v_pos.detach().clone()
    kd0 = tr.trainable.textures["kd"].base.detach().clone()
    ks0 = tr.trainable.textures["ks"].base.detach().clone()
    for _ in range(3):
        tr.step()
    assert torch.equal(tr.trainable.v_pos, pos0)
    assert torch.equal(tr.trainable.textures["kd"].base, kd0)
    assert not torch.equal(tr.trainable.textures["ks"].base, ks0)


def test_reference_mip_pyramids_are_built_once_or_shared(tmp_path: Path) -> None:
    """The Trainer renders its reference from mip pyramids built once (not per
    render), and uses a caller's (an LOD chain's levels share one copy): the
    same steps either way."""
    from difflod.render.materials import mip_stacks

    cfg = make()
    meshes = (open_model(cfg.ref_mesh), open_model(cfg.base_mesh))
    ref_n, base_n, _ = prepare_meshes(*meshes, cfg, torch.device("cpu"))
    own = Trainer(cfg, ref_n, base_n, tmp_path / "own", quiet=True)
    assert own.reference_mips and "kd" in own.reference_mips[0]
    kd = ref_n.materials[0].kd
    assert own.reference_mips[0]["kd"][1].shape[-2] == kd.shape[-2] // 2
    given = mip_stacks(ref_n)
    shared = Trainer(cfg, ref_n, base_n, tmp_path / "shared", quiet=True, reference_mips=given)
    assert shared.reference_mips is given
    losses = [[tr.step()["loss"] for _ in range(2)] for tr in (own, shared)]
    assert losses[0] == losses[1]


def test_everything_frozen_is_an_error(tmp_path: Path, trainer_for) -> None:
    with pytest.raises(DiffLodError, match="nothing to optimize"):
        trainer_for(make(skip_train=["position", "kd", "ks", "normal"]), tmp_path)


def test_textures_stay_in_range(tmp_path: Path, trainer_for) -> None:
    tr = trainer_for(make(random_textures=True, learning_rate=1.0, min_roughness=0.3), tmp_path)
    for _ in range(3):
        tr.step()
    kd, ks = tr.trainable.textures["kd"].base, tr.trainable.textures["ks"].base
    n = tr.trainable.textures["normal"].base
    assert kd.min() >= 0 and kd.max() <= 1
    assert ks[..., 1].min() >= 0.3 - 1e-7 and ks.max() <= 1
    assert n.min() >= -1 and n.max() <= 1


def test_subdivision_and_displacement(tmp_path: Path, trainer_for) -> None:
    tr = trainer_for(make(subdivision=1, displacement=0.1), tmp_path)
    base_tris = tr.trainable.base.num_triangles
    assert tr.trainable.detail_mesh().num_triangles == 4 * base_tris
    for _ in range(3):
        tr.step()
    disp = tr.trainable.displacement
    assert disp is not None and float(disp.detach().abs().max()) > 0.0
    # the exported base keeps the base resolution and carries the displacement map
    assert tr.trainable.base_mesh().num_triangles == base_tris
    assert tr.trainable.material().displacement is disp


def test_custom_mip_layers_and_random_train_res(tmp_path: Path, trainer_for) -> None:
    cfg = make(ref_mesh="asset:shrub?triangles=300&texture_res=32",
               base_mesh="asset:shrub?triangles=300&texture_res=32", layers=3, custom_mip=True,
               random_train_res=True, random_textures=True, loss="mse", texture_res=[128, 128])
    tr = trainer_for(cfg, tmp_path)
    levels = tr.trainable.textures["kd"].levels
    assert len(levels) == 8 and levels[0].shape[-1] == 4   # 128 -> 1, with alpha
    before = [lvl.detach().clone() for lvl in levels]
    for _ in range(3):
        tr.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, levels)]
    # at 16-32 px the 128^2 texture is minified: the coarse levels get trained
    assert any(changed[1:])


def test_supersampled_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainer_for) -> None:
    """spp=2: both models are rendered at 2x2 samples per pixel, i.e. each pixel is the
    mean of a 2x2 block of a render at twice the resolution; the step's PSNR is that of
    those images (sRGB, IEC 61966-2-1, written out here)."""
    from difflod.render import pipeline

    calls: list[tuple[tuple, dict, torch.Tensor]] = []
    real = pipeline.render_mesh

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args, kwargs, out.color.detach()))
        return out

    monkeypatch.setattr(pipeline, "render_mesh", spy)
    tr = trainer_for(make(spp=2, train_res=16), tmp_path)
    rec = tr.step()
    assert [c[1]["spp"] for c in calls] == [2, 2] and all(c[0][2] == (16, 16) for c in calls)
    (ref_args, ref_kw, ref_color), (_, _, opt_color) = calls
    mesh, views, _ = ref_args
    bg = ref_kw["background"].repeat_interleave(2, 1).repeat_interleave(2, 2)
    big = real(mesh, views, (32, 32), **{**ref_kw, "spp": 1, "background": bg}).color
    pooled = torch.nn.functional.avg_pool2d(big.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    torch.testing.assert_close(ref_color, pooled, atol=1e-5, rtol=0)

    def srgb(x: torch.Tensor) -> torch.Tensor:
        x = x.double().clamp(0, 1)
        return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)

    mse = float(((srgb(opt_color) - srgb(ref_color)) ** 2).mean())
    assert rec["psnr"] == pytest.approx(-10 * math.log10(mse), abs=1e-4)


def test_skinned_animation_uses_a_pose_per_view(tmp_path: Path, trainer_for,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each view of a step poses both meshes at its own random time in the
    animation's range, all views in one render (geometry.skinning.pose_views)."""
    from difflod.geometry import skinning

    cfg = make(ref_mesh="asset:skinned_cylinder?triangles=800&texture_res=32",
               base_mesh="asset:skinned_cylinder?triangles=200&texture_res=32", animate=True)
    tr = trainer_for(cfg, tmp_path)
    assert tr.skinned
    seen: list[tuple[int, torch.Tensor]] = []
    real = skinning.pose_views

    def spy(mesh, times, validated=False):
        seen.append((mesh.num_vertices, times.clone()))
        return real(mesh, times, validated)

    monkeypatch.setattr(skinning, "pose_views", spy)
    tr.step()
    assert {n for n, _ in seen} == {tr.reference.num_vertices, tr._candidate().num_vertices}
    (_, t_ref), (_, t_cand) = seen
    assert torch.equal(t_ref, t_cand) and t_ref.shape == (2,)  # batch 2
    skin = tr.reference.skin
    assert float(t_ref[0]) != float(t_ref[1])
    assert all(skin.start <= float(t) <= skin.start + skin.duration for t in t_ref)


def test_nan_step_is_skipped_and_state_restored(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, trainer_for) -> None:
    tr = trainer_for(make(), tmp_path)
    tr.step()
    good = tr.trainable.state_dict()
    from difflod.optimize import losses

    real = losses.image_loss
    monkeypatch.setattr(losses, "image_loss", lambda a, b, kind: real(a, b, kind) * float("nan"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = tr.step()
    assert rec.get("skipped") is True
    assert any("NaN" in str(w.message) for w in caught)
    for k, v in tr.trainable.state_dict().items():
        assert torch.equal(v, good[k]), k


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path: Path, trainer_for) -> None:
    straight = trainer_for(make(), tmp_path / "a")
    for _ in range(4):
        straight.step()
    first = trainer_for(make(), tmp_path / "b")
    for _ in range(2):
        first.step()
    ckpt = first.save_checkpoint()
    resumed = trainer_for(make(), tmp_path / "b")
    resumed.load_checkpoint(ckpt)
    assert resumed.iteration == 2
    for _ in range(2):
        resumed.step()
    a, b = straight.trainable.state_dict(), resumed.trainable.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_resume_with_other_settings_is_refused(tmp_path: Path, trainer_for) -> None:
    tr = trainer_for(make(), tmp_path)
    tr.step()
    ckpt = tr.save_checkpoint()
    other = trainer_for(make(loss="mse"), tmp_path)
    with pytest.raises(DiffLodError, match="loss"):
        other.load_checkpoint(ckpt)


def test_base_mesh_without_uv_suggests_simplify(tmp_path: Path) -> None:
    cfg = make()
    ref, base = open_model(cfg.ref_mesh), open_model(cfg.base_mesh)
    bare = base.replace(v_tex=None, t_tex_idx=None)
    with pytest.raises(DiffLodError, match="difflod simplify"):
        prepare_meshes(ref, bare, cfg, torch.device("cpu"))


def test_evaluate_is_held_out_and_deterministic(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, trainer_for) -> None:
    """The views evaluate renders are none of the views training drew with the same
    seed, and the same seed gives the same numbers (another seed, other views)."""
    from difflod.evaluate import evaluate as ev_module
    from difflod.scene import views as views_module

    drawn: list[torch.Tensor] = []
    real_sample = views_module.sample_views

    def spy_sample(*args, **kwargs):
        v = real_sample(*args, **kwargs)
        drawn.append(v.mvp.detach().cpu())
        return v

    monkeypatch.setattr(views_module, "sample_views", spy_sample)
    tr = trainer_for(make(seed=3), tmp_path)
    for _ in range(4):
        tr.step()
    train_mvp = torch.cat(drawn)
    assert train_mvp.shape[0] == 4 * BASE["batch"]
    rendered: list[torch.Tensor] = []
    real_render = ev_module.render_views

    def spy_render(mesh, views, *args, **kwargs):
        rendered.append(views.mvp.detach().cpu())
        return real_render(mesh, views, *args, **kwargs)

    monkeypatch.setattr(ev_module, "render_views", spy_render)
    ref = open_model(BASE["ref_mesh"])
    cand = open_model(BASE["base_mesh"])
    a = evaluate(ref, {"c": cand}, views=2, res=32, seed=3, backend="cpu", with_flip=False)
    eval_mvp = rendered[0]
    gap = (eval_mvp[:, None] - train_mvp[None]).abs().flatten(2).amax(-1)  # [eval, train]
    assert float(gap.min()) > 1e-3
    b = evaluate(ref, {"c": cand}, views=2, res=32, seed=3, backend="cpu", with_flip=False)
    c = evaluate(ref, {"c": cand}, views=2, res=32, seed=4, backend="cpu", with_flip=False)
    pv = [r["candidates"]["c"]["per_view"]["psnr"] for r in (a, b, c)]
    assert all(math.isfinite(x) for x in pv[0])
    assert pv[0] == pv[1] and pv[0] != pv[2]
    assert torch.equal(rendered[2], eval_mvp) and not torch.allclose(rendered[4], eval_mvp)


def test_run_reads_the_numbers_back_every_log_interval(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, trainer_for) -> None:
    import sys

    tr = trainer_for(make(iter=7, log_interval=3), tmp_path)
    calls: list[tuple[int, int]] = []   # (trainer iteration when called, record's iteration)
    tr.on_step = lambda it, rec: calls.append((tr.iteration, it))
    # reads of tensor values by the optimize package's own code inside the steps
    # after the first (the first reads the Laplacian once to fix its weight). The
    # views are drawn on the host (scene.views) and the CPU kernels read their
    # inputs by design: on a GPU those are not syncs, the trainer's reads were.
    reads: list[str] = []
    inside = [False]
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__"):
        real = getattr(torch.Tensor, name)

        def spy(self: torch.Tensor, *a: object, _real=real, _name=name, **k: object) -> object:
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if inside[0] and "/difflod/optimize/" in caller:
                reads.append(f"{_name} in {caller}:{sys._getframe(1).f_lineno}")
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, spy)
    advance = tr.advance

    def watched() -> dict:
        inside[0] = tr.iteration > 0
        try:
            return advance()
        finally:
            inside[0] = False
    monkeypatch.setattr(tr, "advance", watched)
    history = tr.run(checkpoint=False)
    assert reads == []
    # read back after the warm-up step, after iterations 3 and 6 (every 3rd), at the end
    assert calls == [(1, 0), (3, 1), (3, 2), (6, 3), (6, 4), (6, 5), (7, 6)]
    assert [h["iteration"] for h in history] == list(range(7))
    assert all({"loss", "laplacian", "psnr", "ms"} <= set(h) for h in history)


def test_the_wait_at_a_read_back_is_shared_by_the_steps_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trainer_for) -> None:
    """A recorded GPU step queues in microseconds and its device time is waited
    for where the numbers are read back: that wait is shared out over the
    records read, so their mean "ms" is the steps' time (on an H100 the records
    said 3.7 ms a step for a 34 ms one). Here the read is made to wait 1.2 s."""
    import time

    tr = trainer_for(make(iter=5, log_interval=4), tmp_path)
    records = [tr.advance() for _ in range(4)]
    host = [ms for _, _, _, ms in tr.pending.items]  # the host's time in each step
    real = torch.Tensor.tolist

    def slow(self: torch.Tensor) -> object:
        time.sleep(1.2)
        return real(self)
    monkeypatch.setattr(torch.Tensor, "tolist", slow)
    done = tr.flush()
    monkeypatch.undo()
    assert done == records
    for r, h in zip(done, host, strict=True):
        assert 300.0 + h <= r["ms"] <= 400.0 + h, (r["ms"], h)


def test_position_smoothing_trains_smoothed_positions(tmp_path: Path, trainer_for) -> None:
    """With position_smoothing the trained parameter is u = (I + lambda L) x: the
    rendered positions are M^-1 u, they move, and a checkpoint resumes them."""
    cfg = make(position_smoothing=5.0, laplacian_factor=0.0, learning_rate=[0.01, 0.01])
    tr = trainer_for(cfg, tmp_path / "a")
    start = tr.trainable.positions().detach().clone()
    # at the start the parameter maps back to the base's positions (float32 solve)
    torch.testing.assert_close(start, tr.trainable.base.v_pos, rtol=0, atol=1e-4)
    for _ in range(3):
        tr.step()
    x = tr.trainable.positions().detach()
    u = tr.trainable.v_pos.detach()
    assert float((x - start).abs().max()) > 1e-4  # the geometry moved
    m = tr.trainable.smooth.matrix.to_dense().float()
    torch.testing.assert_close(m @ x, u, rtol=0, atol=1e-4)  # x = M^-1 u
    ckpt = tr.save_checkpoint()
    again = trainer_for(cfg, tmp_path / "a")
    again.load_checkpoint(ckpt)
    torch.testing.assert_close(again.trainable.positions(), tr.trainable.positions())
    with pytest.raises(ConfigError, match="position_smoothing"):
        make(position_smoothing=-1.0)


def test_the_reference_shading_frame_is_computed_on_the_cpu(monkeypatch) -> None:
    """Whatever the run's device, the reference's normals and tangents come from
    the CPU (a GPU's scatter-adds sum in any order, and the checkpoint's digest
    of the reference must match on resume), then move to the device ("meta"
    stands in for a GPU here)."""
    from difflod.geometry import tangents

    seen: list[torch.device] = []
    real = tangents.with_shading_frame

    def spy(mesh):
        seen.append(mesh.v_pos.device)
        return real(mesh)

    monkeypatch.setattr(tangents, "with_shading_frame", spy)
    ref = open_model("asset:spiky?triangles=2000&texture_res=64")
    base = open_model("asset:sphere?triangles=300")
    r, b, _ = prepare_meshes(ref, base, load_config(None, {}), torch.device("meta"))
    assert seen == [torch.device("cpu")]
    assert r.v_pos.device.type == r.v_nrm.device.type == b.v_pos.device.type == "meta"
    cpu_a, _, _ = prepare_meshes(ref, base, load_config(None, {}), torch.device("cpu"))
    cpu_b, _, _ = prepare_meshes(ref, base, load_config(None, {}), torch.device("cpu"))
    assert mesh_digest(cpu_a) == mesh_digest(cpu_b)


def test_the_trainer_readies_a_training_steps_kernels_first(tmp_path: Path, trainer_for,
                                                             monkeypatch) -> None:
    """Before its first render (the reference's pyramids), the Trainer has its
    backend's kernels of a render and a step compiled ahead (render.backends.warm_up)."""
    import difflod.optimize.trainer as trainer_module

    calls = []

    def warm_up(name, device, *, train, on_compile=None):
        calls.append((name, torch.device(device), train, on_compile))

    monkeypatch.setattr(trainer_module, "warm_up", warm_up)
    monkeypatch.setattr(trainer_module, "mip_stacks",
                        lambda mesh: calls.append("mips") or {})
    trainer_for(make(backend="cpu"), tmp_path)
    assert calls == [("cpu", torch.device("cpu"), True, None), "mips"]  # quiet: no notice
