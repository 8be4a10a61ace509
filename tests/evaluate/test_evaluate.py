"""Tests for difflod.evaluate.evaluate: results structure, JSON, table, self-evaluation."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from difflod.evaluate import evaluate as ev
from difflod.mesh import Material, Mesh
from difflod.scene.views import fixed_views


def _box(scale: float = 1.0, offset: float = 0.0) -> Mesh:
    p = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
                     dtype=torch.float32) * scale + offset
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    mat = Material(kd=torch.full((4, 8, 3), 0.5))
    return Mesh(v_pos=p, t_pos_idx=f, materials=(mat,)).validate()


def test_texture_bytes_counts_8bit_channels() -> None:
    m = _box()
    # kd 4x8x3 = 96, ks 1x1x3 = 3
    assert ev.texture_bytes(m) == 99
    # an emissive map and an occlusion map are stored too: 2x2x3 + 4x4x1
    glow = dataclasses.replace(m.materials[0], emissive=torch.ones(2, 2, 3),
                               occlusion=torch.ones(4, 4, 1))
    assert ev.texture_bytes(m.replace(materials=(glow,))) == 99 + 12 + 16
    # two materials on one atlas (base/opaque_split.py), the image shared or an equal
    # copy as read back from a file: stored once; each 1x1 factor per material
    mat = m.materials[0]
    for kd in (mat.kd, mat.kd.clone()):
        twin = dataclasses.replace(mat, kd=kd, alpha_mode="OPAQUE")
        assert ev.texture_bytes(m.replace(materials=(mat, twin))) == 99 + 3
    other = dataclasses.replace(mat, kd=mat.kd * 0.5)
    assert ev.texture_bytes(m.replace(materials=(mat, other))) == 2 * 99


def test_fixed_views_deterministic() -> None:
    a, b = fixed_views(5, seed=3), fixed_views(5, seed=3)
    assert torch.equal(a.mvp, b.mvp) and torch.equal(a.lightpos, b.lightpos)
    assert not torch.equal(a.mvp, fixed_views(5, seed=4).mvp)


def test_normalize_to_uses_the_reference_transform() -> None:
    ref = _box(scale=3.0, offset=5.0)
    cand = _box(scale=1.5, offset=5.0)
    r, c = ev.normalize_to(ref, ref), ev.normalize_to(cand, ref)
    assert torch.allclose(r.v_pos.abs().max(0).values, torch.ones(3))
    assert torch.allclose(c.v_pos.abs().max(0).values, torch.full((3,), 0.5))


def _fake_render(mesh: Mesh, views: object, res: int, *, backend: object = None,
                 chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Stand-in renderer: a picture that depends on the mesh's size only."""
    n = len(views)  # type: ignore[arg-type]
    size = float(mesh.v_pos.abs().max())
    g = torch.Generator().manual_seed(0)
    base = torch.rand(n, res, res, 3, generator=g)
    color = (base * size).clamp(0, 1)
    yy = torch.arange(res)[:, None].expand(res, res)
    alpha = (yy < int(res * size / 2)).float()[None, :, :, None].expand(n, res, res, 1)
    return color, alpha


def test_evaluate_structure_and_stats(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ev, "render_views", _fake_render)
    ref = _box()
    f = tmp_path / "small.obj"
    f.write_bytes(b"x" * 1234)
    res = ev.evaluate(ref, {"same": _box(), "small": _box(0.5)}, views=3, res=16, seed=0,
                      files={"small": f}, chamfer_samples=2000)
    same, small = res["candidates"]["same"], res["candidates"]["small"]
    assert same["psnr"]["mean"] == math.inf and same["ssim"]["mean"] == pytest.approx(1.0)
    assert same["flip"]["mean"] == pytest.approx(0.0, abs=1e-7)
    assert same["iou"]["mean"] == 1.0 and same["chamfer"] == 0.0
    assert small["psnr"]["mean"] < 20 and small["ssim"]["mean"] < 0.9
    assert small["iou"]["mean"] == pytest.approx(0.5)
    assert small["chamfer"] > 0.5
    assert len(small["per_view"]["psnr"]) == 3
    assert small["psnr"]["min"] <= small["psnr"]["mean"] <= small["psnr"]["max"]
    assert small["file_bytes"] == 1234 and "file_bytes" not in same
    assert small["triangles"] == 12 and small["vertices"] == 8

    table = ev.format_table(res)
    assert "same" in table and "small" in table and "inf" in table

    out = tmp_path / "m" / "metrics.json"
    ev.write_metrics(out, res)
    loaded = json.loads(out.read_text())  # strict JSON: no Infinity token
    assert "Infinity" not in out.read_text()
    assert loaded["candidates"]["same"]["psnr"]["mean"] == "inf"
    assert loaded["candidates"]["small"]["psnr"]["mean"] == pytest.approx(small["psnr"]["mean"])
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]


def test_evaluate_list_candidates_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "render_views", _fake_render)
    res = ev.evaluate(_box(), [_box()], views=1, res=16, chamfer_samples=100, with_flip=False)
    assert list(res["candidates"]) == ["candidate0"]
    assert "flip" not in res["candidates"]["candidate0"]


def test_evaluate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="views"):
        ev.evaluate(_box(), [], views=0)


def test_evaluate_mesh_against_itself() -> None:
    from difflod.assets import make

    ref = make("sphere", triangles=800, seed=0, texture_res=64)
    res = ev.evaluate(ref, {"self": ref, "big": ev.normalize_to(ref, _box(0.8))}, views=2,
                      res=32, seed=0, chamfer_samples=1000, backend="cpu")
    c = res["candidates"]["self"]
    assert c["psnr"]["mean"] == math.inf
    assert c["ssim"]["mean"] == pytest.approx(1.0)
    assert c["flip"]["mean"] == pytest.approx(0.0, abs=1e-7)
    assert c["iou"]["mean"] == 1.0 and c["chamfer"] == 0.0
    big = res["candidates"]["big"]  # the same sphere, 1.25x larger
    assert big["psnr"]["mean"] < 25 and big["iou"]["mean"] < 0.9 and big["chamfer"] > 0.1


def test_evaluate_with_pictures_keeps_the_scored_renders() -> None:
    from difflod.assets import make
    from difflod.evaluate.metrics import flip_error_map

    ref = make("sphere", triangles=600, seed=0, texture_res=32)
    cand = make("sphere", triangles=200, seed=1, texture_res=16)
    results, pics = ev.evaluate_with_pictures(ref, {"c": cand}, views=3, res=24, seed=4,
                                           backend="cpu", chamfer_samples=500, keep=2)
    assert results == ev.evaluate(ref, {"c": cand}, views=3, res=24, seed=4, backend="cpu",
                               chamfer_samples=500)
    views = fixed_views(3, 4)
    again_ref = ev.render_views(ev.normalize_to(ref, ref), views, 24, backend="cpu")[0]
    again = ev.render_views(ev.normalize_to(cand, ref), views, 24, backend="cpu")[0]
    # the same deterministic renderer on the same views: equal to the bit
    assert torch.equal(pics.reference, again_ref[:2])
    assert torch.equal(pics.candidates["c"], again[:2])
    for i in range(2):
        # scored by the torch FLIP: flip-evaluator's map and mean within the bounds
        # of tests/evaluate/test_flip_torch.py (float32 on both sides)
        err, mean = flip_error_map(again_ref[i], again[i])
        assert float((pics.flip["c"][i] - err).abs().max()) < 2e-3
        assert results["candidates"]["c"]["per_view"]["flip"][i] == pytest.approx(mean, abs=2e-5)
    assert results["settings"]["device"] == "cpu"
    assert pics.reference.device.type == "cpu" and pics.flip["c"].device.type == "cpu"


def test_evaluate_on_the_gpu_equals_the_cpu(cuda: torch.device) -> None:
    from difflod.assets import make

    ref = make("spiky", triangles=3000, seed=0, texture_res=64)
    cand = make("spiky", triangles=300, seed=0, texture_res=32)
    gpu, gpics = ev.evaluate_with_pictures(ref, {"c": cand}, views=4, res=96, seed=2,
                                           chamfer_samples=4000, keep=2, device=cuda)
    cpu, cpics = ev.evaluate_with_pictures(ref, {"c": cand}, views=4, res=96, seed=2,
                                           chamfer_samples=4000, keep=2, device="cpu")
    assert gpu["settings"]["device"].startswith("cuda") and cpu["settings"]["device"] == "cpu"
    assert gpics.reference.device.type == "cpu" and gpics.flip["c"].device.type == "cpu"
    g, c = gpu["candidates"]["c"], cpu["candidates"]["c"]
    # the two renderers (cuda and cpu backends) agree to float32 rounding (colour
    # differences of 1e-4 on average, tests/render/test_cuda_pipeline.py): against
    # a candidate ~20 dB away that moves the PSNR by ~0.01 dB; bounds 0.05 dB and
    # 2e-3 for SSIM and FLIP (their float32 / float64 sums in other orders too)
    for i in range(4):
        assert g["per_view"]["psnr"][i] == pytest.approx(c["per_view"]["psnr"][i], abs=0.05)
        assert g["per_view"]["ssim"][i] == pytest.approx(c["per_view"]["ssim"][i], abs=2e-3)
        assert g["per_view"]["flip"][i] == pytest.approx(c["per_view"]["flip"][i], abs=2e-3)
        # the same visibility for the same positions (tests/render/test_cuda_pipeline.py);
        # normalized on each device, a silhouette pixel's alpha may cross 0.5: one of
        # ~3,000 covered pixels moves the IoU by 3e-4; bound: 6 such pixels
        assert g["per_view"]["iou"][i] == pytest.approx(c["per_view"]["iou"][i], abs=2e-3)
    # the same random draws on positions normalized on each device (float32: ~1e-7
    # apart), float64 distances on both sides: 1e-7 of a distance of ~0.05
    assert g["chamfer"] == pytest.approx(c["chamfer"], abs=1e-6)
    assert float((gpics.reference - cpics.reference).abs().mean()) < 1e-3


def test_evaluate_readies_the_render_kernels_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from difflod.render import backends

    calls = []
    monkeypatch.setattr(backends, "warm_up",
                        lambda name, device, *, train: calls.append((name, str(device), train)))
    monkeypatch.setattr(ev, "render_views",
                        lambda *a, **k: calls.append("render") or _fake_render(*a, **k))
    ev.evaluate(_box(), [_box()], views=1, res=16, chamfer_samples=100, with_flip=False,
                backend="torch")
    assert calls[:2] == [("torch", "cpu", False), "render"]
