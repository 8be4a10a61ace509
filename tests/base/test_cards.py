"""Tests for the billboard-cloud base (difflod.base.cards) and its choice in simplify."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflod.base.bake import rasterize_uv
from difflod.base.baseline import baseline
from difflod.base.cards import card_cloud, is_foliage
from difflod.mesh import Material, Mesh
from difflod.models import open_model


def _disc_card(res: int = 64) -> Mesh:
    """A 2 x 2 quad in the z = 0 plane whose MASK texture draws a disc of radius
    0.35 (UV units) around the texture's centre, in one colour."""
    yy, xx = np.mgrid[0:res, 0:res]
    r = np.hypot((xx + 0.5) / res - 0.5, (yy + 0.5) / res - 0.5)
    kd = np.zeros((res, res, 4), dtype=np.float32)
    kd[..., :3] = (0.7, 0.3, 0.1)
    kd[..., 3] = (r < 0.35).astype(np.float32)
    pos = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
    uv = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    idx = torch.tensor([[0, 1, 2], [0, 2, 3]])
    mat = Material(name="disc", kd=torch.from_numpy(kd), alpha_mode="MASK", alpha_cutoff=0.5,
                   double_sided=True)
    return Mesh(v_pos=pos, t_pos_idx=idx, v_tex=uv, t_tex_idx=idx.clone(),
                materials=(mat,)).validate()


def test_foliage_is_told_from_other_models() -> None:
    assert is_foliage(open_model("asset:shrub?triangles=2000"))
    for name in ("knot", "glass", "beacon", "multi_material", "vcolor"):
        assert not is_foliage(open_model(f"asset:{name}?triangles=2000")), name


def test_a_flat_cut_out_bakes_onto_its_own_plane() -> None:
    """One cluster: its first card lies in the quad's plane and shows the disc
    (its alpha and colour); texels outside the disc are clear."""
    pos, idx, uv, uv_idx, baked = card_cloud(_disc_card(), 4, 128, seed=0)
    assert idx.shape == (4, 3) and uv_idx.shape == (4, 3)
    assert np.abs(pos[:4, 2]).max() < 1e-6            # card 0 is the z = 0 plane
    assert (uv >= 0).all() and (uv <= 1).all()
    alpha, kd = baked["kd"][..., 3], baked["kd"][..., :3]
    # card 0's texels by their 3D point on the card: radius from the disc's centre
    raster = rasterize_uv(uv, uv_idx, 128)
    inside = (raster.tri == 0) | (raster.tri == 1)
    point = np.einsum("hwk,hwkc->hwc", raster.bary, pos[idx[np.maximum(raster.tri, 0)]])
    r = np.linalg.norm(point[..., :2], axis=-1)
    assert inside.sum() > 1000 and r[inside].max() > 0.75  # the card holds the whole disc
    assert (alpha[inside & (r < 0.6)] >= 0.5).mean() > 0.97
    assert (alpha[inside & (r > 0.8)] < 0.5).mean() > 0.97
    assert np.abs(kd[inside & (r < 0.6)] - np.array([0.7, 0.3, 0.1])).max() < 1e-5
    assert np.all(alpha[~(baked["coverage"])] == 0)     # outside every chart: clear


def test_cards_cover_a_shrub_where_qem_loses_it() -> None:
    """Silhouette overlap with the reference over 4 held-out views: QEM keeps a
    few scattered leaves (measured 0.08-0.10 at 1%); the card cloud covers
    the shrub (measured 0.68-0.71)."""
    from difflod.evaluate.evaluate import evaluate

    ref = open_model("asset:shrub?triangles=4000")
    qem = baseline(ref, 80, texture_res=128)
    cards = baseline(ref, 80, texture_res=128, method="cards")
    assert cards.num_triangles <= 80 and cards.num_triangles % 4 == 0
    mat = cards.materials[0]
    assert mat.alpha_mode == "MASK" and mat.alpha_cutoff == 0.5 and mat.double_sided
    assert mat.kd.shape == (128, 128, 4) and mat.normal is not None
    scores = evaluate(ref, {"qem": qem, "cards": cards}, views=4, res=96, with_flip=False)
    iou = {k: scores["candidates"][k]["iou"]["mean"] for k in ("qem", "cards")}
    psnr = {k: scores["candidates"][k]["psnr"]["mean"] for k in ("qem", "cards")}
    assert iou["cards"] > 0.5 and iou["cards"] > iou["qem"] + 0.3, iou
    assert psnr["cards"] > psnr["qem"] + 1.0, psnr


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="method must be 'qem', 'remesh' or 'cards'"):
        baseline(_disc_card(), 4, texture_res=32, method="billboards")


def test_a_large_budget_keeps_each_card_legible() -> None:
    """1,999 triangles would be 998 cards, 2 texels each in a 64^2 atlas: the
    cloud stops at the cards the atlas holds at 8 texels across (+ padding)."""
    ref = open_model("asset:shrub?triangles=2000")
    _, idx, uv, uv_idx, _ = card_cloud(ref, 1999, 64, seed=0)
    assert 4 <= len(idx) <= 2 * (64 // 12) ** 2 and len(idx) % 4 == 0
    side = (uv[uv_idx].max(1) - uv[uv_idx].min(1)) * 64  # [F,2] texels across each chart
    assert side.min() >= 8 - 1e-3


def test_a_solid_that_says_mask_is_not_foliage() -> None:
    """MASK on every material but an alpha that cuts nothing away (a common
    export default) is a solid: QEM simplifies it, not cards."""
    import dataclasses

    knot = open_model("asset:knot?triangles=2000")
    said = [dataclasses.replace(m, kd=torch.cat([m.kd[..., :3], torch.ones_like(m.kd[..., :1])],
                                                -1), alpha_mode="MASK")
            for m in knot.materials]
    assert not is_foliage(knot.replace(materials=tuple(said)))
    cut = [dataclasses.replace(m, kd=torch.cat([m.kd[..., :3], torch.rand_like(m.kd[..., :1],
                                                generator=torch.Generator().manual_seed(0))], -1),
                               alpha_mode="MASK") for m in knot.materials]
    assert is_foliage(knot.replace(materials=tuple(cut)))  # half of it cut away


def test_the_visibility_lookup_reads_the_base_colour_as_the_full_one_does() -> None:
    """`base_colour_only` (the cards' test of millions of samples) gives the very
    kd, alpha and cutoff of the full lookup and neutral values for the rest."""
    from difflod.base.bake import reference_attributes
    from difflod.geometry.sampling import sample_surface

    shrub = open_model("asset:shrub?triangles=2000&texture_res=64")
    pos = shrub.v_pos.double().numpy()
    _, tri, bary = sample_surface(pos, shrub.t_pos_idx.numpy(), 5000, np.random.default_rng(0))
    full = reference_attributes(shrub, tri, bary)
    lean = reference_attributes(shrub, tri, bary, base_colour_only=True)
    assert full.kd.shape == lean.kd.shape == (5000, 4)
    np.testing.assert_array_equal(lean.kd, full.kd)
    np.testing.assert_array_equal(lean.cutoff, full.cutoff)
    assert 0.05 < (full.kd[:, 3] < full.cutoff).mean() < 0.95  # some samples cut away
    assert np.all(lean.ks == 0) and np.all(lean.nmap == [0.0, 0.0, 1.0])
    assert not np.all(full.ks == 0)  # the full lookup did read the reference's ks
