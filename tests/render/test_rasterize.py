"""rasterize: coverage, w <= 0 handling, perspective-correct values, gradients, rast_db, errors."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from difflod.errors import BackendError
from difflod.render.backends import torch_ref
from difflod.render.rasterize import rasterize
from difflod.scene.camera import look_at, perspective

NEAR, FAR = 0.1, 10.0


def _icosphere(subdivisions: int = 2) -> tuple[torch.Tensor, torch.Tensor, float]:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    pos = torch.tensor(m.vertices, dtype=torch.float32)
    tris = torch.tensor(m.faces, dtype=torch.int64)
    centers = pos[tris].mean(dim=1)
    normals = torch.tensor(m.face_normals, dtype=torch.float32)
    r_in = float((centers * normals).sum(-1).min())  # inscribed sphere radius
    return pos, tris, r_in


def _to_clip(pos: torch.Tensor, mvp: torch.Tensor) -> torch.Tensor:
    return torch.cat([pos, torch.ones_like(pos[:, :1])], dim=1) @ mvp.T


def _ray_dirs(h: int, w: int, proj: torch.Tensor) -> torch.Tensor:
    """View-space ray directions `[H,W,3]` float64 through pixel centres (row 0 = bottom)."""
    px = (2.0 * torch.arange(w, dtype=torch.float64) + 1.0) / w - 1.0
    py = (2.0 * torch.arange(h, dtype=torch.float64) + 1.0) / h - 1.0
    yy, xx = torch.meshgrid(py, px, indexing="ij")
    p = proj.double()
    return torch.stack([xx / p[0, 0], yy / p[1, 1], -torch.ones_like(xx)], dim=-1)


def test_matches_torch_reference_on_random_scenes() -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        b, v, f = 2, 90, 60
        clip = torch.randn(b, v, 4, generator=g)
        clip[..., 3] = clip[..., 3].abs() + 0.3
        clip[:, :12, 3] *= -1  # some vertices behind the camera
        clip[:, 12:18, 3] = -clip[:, 12:18, 3].abs()
        clip[..., 2] *= 0.4
        tris = torch.randint(0, v, (f, 3), generator=g)
        tris[:3] = torch.tensor([[12, 13, 14], [15, 16, 17], [12, 15, 16]])  # entirely behind
        r_cpu, db_cpu = rasterize(clip, tris, (40, 56), grad_db=True, backend="cpu")
        r_ref, db_ref = rasterize(clip, tris, (40, 56), grad_db=True, backend="torch")
        assert torch.equal(r_cpu[..., 3], r_ref[..., 3])
        assert (r_cpu[..., 3] > 0).float().mean() > 0.3
        torch.testing.assert_close(r_cpu[..., :3], r_ref[..., :3], atol=1e-5, rtol=0)
        torch.testing.assert_close(db_cpu, db_ref)
        ids = r_cpu[..., 3].long()
        assert not torch.isin(ids, torch.tensor([1, 2, 3])).any()


def test_icosphere_watertight_and_nearest_from_50_views() -> None:
    pos, tris, r_in = _icosphere(2)
    h = w = 48
    proj = perspective(math.radians(50), 1.0, NEAR, FAR)
    dirs = _ray_dirs(h, w, proj)
    g = torch.Generator().manual_seed(7)
    views, clips = [], []
    for _ in range(50):
        d = torch.randn(3, generator=g)
        eye = d / d.norm() * (2.2 + 2 * torch.rand(1, generator=g))
        up = torch.randn(3, generator=g)
        views.append(look_at(eye, torch.rand(3, generator=g) * 0.4 - 0.2, up))
        clips.append(_to_clip(pos, proj @ views[-1]))
    clip = torch.stack(clips)
    rast, _ = rasterize(clip, tris, (h, w), backend="cpu")
    ref, _ = rasterize(clip, tris, (h, w), backend="torch")
    assert torch.equal(rast[..., 3], ref[..., 3])  # the winner is the nearest, as in the oracle
    dn = dirs / dirs.norm(dim=-1, keepdim=True)
    for k, view in enumerate(views):
        # every ray that hits the inscribed sphere must hit the mesh: no cracks
        c = (view.double() @ torch.tensor([0.0, 0, 0, 1], dtype=torch.float64))[:3]
        along = dn @ c
        dist2 = (c * c).sum() - along**2
        hits_inner = (dist2 < (r_in * 0.999) ** 2) & (along > 0)
        assert hits_inner.sum() > 20
        assert (rast[k, ..., 3][hits_inner] > 0).all()
        # and the visible surface is the front one: nearer than the sphere's centre
        z_c = proj.double() @ torch.cat([c, torch.ones(1, dtype=torch.float64)])
        assert (rast[k, ..., 2][hits_inner] < z_c[2] / z_c[3]).all()


def _pixels_analytic(view_tri: torch.Tensor, proj: torch.Tensor, h: int, w: int):
    """Ray–plane intersection per pixel: barycentrics (l0, l1, l2) `[H,W,3]`, ray t `[H,W]`."""
    d = _ray_dirs(h, w, proj)
    p0, p1, p2 = view_tri.double()
    m = torch.stack([p1 - p0, p2 - p0], dim=1)  # [3,2]
    n = torch.linalg.cross(p1 - p0, p2 - p0)
    t = (p0 @ n) / (d @ n)
    hit = d * t[..., None]
    sol = torch.linalg.lstsq(m.expand(h * w, 3, 2), (hit - p0).reshape(-1, 3, 1)).solution
    uv = sol.reshape(h, w, 2)
    bary = torch.stack([1 - uv[..., 0] - uv[..., 1], uv[..., 0], uv[..., 1]], dim=-1)
    return bary, t, hit


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_perspective_correct_values_and_w_crossing_triangle(backend: str) -> None:
    h, w = 48, 40
    proj = perspective(math.radians(60), w / h, NEAR, FAR)
    cases = [
        torch.tensor([[-1.0, -0.8, -2.0], [1.2, -0.5, -4.0], [0.1, 1.0, -3.0]]),  # all in front
        torch.tensor([[-0.5, -0.3, -2.0], [0.6, -0.2, -2.5], [0.2, 0.4, 1.5]]),  # crosses w = 0
    ]
    for tri_view in cases:
        clip = _to_clip(tri_view, proj)
        rast, _ = rasterize(clip, torch.tensor([[0, 1, 2]]), (h, w), backend=backend)
        bary, t, hit = _pixels_analytic(tri_view, proj, h, w)
        z_view = hit[..., 2]
        z_ndc = (proj[2, 2].double() * z_view + proj[2, 3].double()) / (-z_view)
        inside = (bary.min(-1).values > 1e-4) & (t > 0) & (z_ndc > -1) & (z_ndc < 1)
        outside = (bary.min(-1).values < -1e-4) | (t < 0) | (z_ndc < -1) | (z_ndc > 1)
        cov = rast[0, ..., 3] > 0
        assert inside.sum() > 50
        assert cov[inside].all() and not cov[outside].any()
        torch.testing.assert_close(
            rast[0, ..., 0][inside].double(), bary[..., 1][inside], atol=2e-5, rtol=0
        )
        torch.testing.assert_close(
            rast[0, ..., 1][inside].double(), bary[..., 2][inside], atol=2e-5, rtol=0
        )
        torch.testing.assert_close(
            rast[0, ..., 2][inside].double(), z_ndc[inside], atol=2e-5, rtol=0
        )
    # the crossing triangle was clipped, not dropped: its visible part does not reach its
    # behind-camera vertex, but it covers pixels


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_triangle_behind_camera_or_beyond_far_draws_nothing(backend: str) -> None:
    proj = perspective(math.radians(60), 1.0, NEAR, FAR)
    behind = torch.tensor([[-0.5, -0.3, 2.0], [0.6, -0.2, 2.5], [0.2, 0.4, 1.5]])
    beyond = torch.tensor([[-5.0, -3.0, -20.0], [6.0, -2.0, -25.0], [2.0, 4.0, -15.0]])
    for tri_view in (behind, beyond):
        rast, _ = rasterize(
            _to_clip(tri_view, proj), torch.tensor([[0, 1, 2]]), (32, 32), backend=backend
        )
        assert not rast.any()


def test_fill_rule_shared_edges_covered_exactly_once() -> None:
    """A perspective grid whose edges pass exactly through pixel centres: each pixel once."""
    n = 4
    h = w = 16
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, n + 1)  # exactly pixel-centre columns
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    g = torch.Generator().manual_seed(3)
    wv = 1.0 + torch.rand(gx.shape, generator=g).round()  # w in {1, 2}: same NDC, other depth
    clip = torch.stack([gx * wv, gy * wv, 0.1 * wv, wv], dim=-1).reshape(-1, 4)
    tris = []
    for j in range(n):
        for i in range(n):
            a, b, c, d = (
                j * (n + 1) + i,
                j * (n + 1) + i + 1,
                (j + 1) * (n + 1) + i,
                (j + 1) * (n + 1) + i + 1,
            )
            tris += [[a, b, d], [a, d, c]] if (i + j) % 2 else [[a, b, c], [b, d, c]]
    tris = torch.tensor(tris)
    counts = torch.zeros(h, w, dtype=torch.int64)
    for k in range(len(tris)):
        single, _ = rasterize(clip, tris[k : k + 1], (h, w), backend="cpu")
        counts += (single[0, ..., 3] > 0).long()
    lo = round((xs[0].item() + 1) * w / 2 - 0.5)
    hi = round((xs[-1].item() + 1) * w / 2 - 0.5)
    interior = counts[lo + 1 : hi, lo + 1 : hi]  # pixels on the outer border may go either way
    assert interior.numel() == (hi - lo - 1) ** 2 > 100
    assert (interior == 1).all(), interior
    assert counts.max() == 1
    full, _ = rasterize(clip, tris, (h, w), backend="cpu")
    ref, _ = rasterize(clip, tris, (h, w), backend="torch")
    assert torch.equal(full[..., 3], ref[..., 3])


def test_gradcheck_uvz_wrt_clip_pos() -> None:
    clip = torch.tensor(
        [[-0.83, -0.71, 0.2, 1.1], [0.92, -0.62, -0.3, 0.9], [0.05, 0.88, 0.4, 1.3]],
        dtype=torch.float64,
        requires_grad=True,
    )
    tris = torch.tensor([[0, 1, 2]])

    def fn(c: torch.Tensor) -> torch.Tensor:
        r, db = rasterize(c, tris, (5, 6), grad_db=True, backend="cpu")
        return torch.cat([r[..., :3], db], dim=-1)

    r, _ = rasterize(clip, tris, (5, 6), backend="cpu")
    assert (r[..., 3] > 0).sum() >= 8
    assert torch.autograd.gradcheck(fn, (clip,), eps=1e-6, atol=1e-6)


def test_rast_db_matches_finite_differences() -> None:
    proj = perspective(math.radians(60), 1.0, NEAR, FAR)
    tri_view = torch.tensor([[-3.0, -2.0, -2.0], [3.0, -1.5, -6.0], [0.0, 3.0, -3.0]])
    rast, db = rasterize(
        _to_clip(tri_view, proj), torch.tensor([[0, 1, 2]]), (64, 64), grad_db=True
    )
    r, d = rast[0].double(), db[0].double()
    cov = r[..., 3] > 0
    ok = cov[1:-1, 1:-1] & cov[1:-1, 2:] & cov[1:-1, :-2] & cov[2:, 1:-1] & cov[:-2, 1:-1]
    assert ok.sum() > 500
    for ch, (dx, dy) in ((0, (0, 1)), (1, (2, 3))):
        fd_x = (r[1:-1, 2:, ch] - r[1:-1, :-2, ch]) / 2
        fd_y = (r[2:, 1:-1, ch] - r[:-2, 1:-1, ch]) / 2
        torch.testing.assert_close(d[1:-1, 1:-1, dx][ok], fd_x[ok], atol=2e-5, rtol=1e-3)
        torch.testing.assert_close(d[1:-1, 1:-1, dy][ok], fd_y[ok], atol=2e-5, rtol=1e-3)
    assert not db[0][~cov].any()


def test_batch_and_unbatched_agree_and_empty_mesh() -> None:
    g = torch.Generator().manual_seed(5)
    clip = torch.randn(2, 30, 4, generator=g)
    clip[..., 3] = clip[..., 3].abs() + 0.5
    tris = torch.randint(0, 30, (20, 3), generator=g, dtype=torch.int32)
    both, _ = rasterize(clip, tris, (24, 20))
    for b in range(2):
        one, _ = rasterize(clip[b], tris, (24, 20))
        assert torch.equal(one[0], both[b])
    empty, db = rasterize(clip, torch.zeros(0, 3, dtype=torch.int64), (8, 9), grad_db=True)
    assert empty.shape == (2, 8, 9, 4) and db.shape == (2, 8, 9, 4)
    assert not empty.any() and not db.any()
    assert empty.dtype == torch.float32


def test_gradient_reaches_clip_pos() -> None:
    clip = torch.tensor(
        [[-0.8, -0.7, 0.1, 1.0], [0.9, -0.6, 0.2, 1.0], [0.0, 0.9, 0.3, 1.0]], requires_grad=True
    )
    rast, _ = rasterize(clip, torch.tensor([[0, 1, 2]]), (16, 16))
    rast[..., :3].sum().backward()
    assert clip.grad is not None and clip.grad.abs().sum() > 0 and torch.isfinite(clip.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip_pos": torch.zeros(3, 3)}, "clip_pos: expected shape"),
        ({"clip_pos": torch.zeros(3, 4, dtype=torch.float16)}, "clip_pos: expected dtype"),
        (
            {"clip_pos": torch.tensor([[0.0, 0, 0, 1], [float("nan"), 0, 0, 1], [0, 1, 0, 1]])},
            "clip_pos: contains NaN",
        ),
        ({"tris": torch.tensor([[0, 1, 3]])}, r"tris: indices must be in \[0, 3\)"),
        ({"tris": torch.tensor([[0, -1, 2]])}, "tris: indices"),
        ({"tris": torch.tensor([[0.0, 1, 2]])}, "tris: expected dtype"),
        ({"tris": torch.tensor([0, 1, 2])}, "tris: expected shape"),
        ({"resolution": (16,)}, "resolution"),
        ({"resolution": (16, 0)}, "resolution"),
        ({"resolution": (16, 20000)}, "resolution"),
        ({"resolution": (16.0, 16)}, "resolution"),
        ({"resolution": (True, 16)}, "resolution"),
    ],
)
def test_bad_inputs_raise_value_error(kwargs: dict, match: str) -> None:
    args = {
        "clip_pos": torch.tensor([[0.0, 0, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]]),
        "tris": torch.tensor([[0, 1, 2]]),
        "resolution": (8, 8),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rasterize(args["clip_pos"], args["tris"], args["resolution"])


def test_unknown_backend_raises_backend_error() -> None:
    clip = torch.tensor([[0.0, 0, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1]])
    with pytest.raises(BackendError, match="'vulkan'"):
        rasterize(clip, torch.tensor([[0, 1, 2]]), (8, 8), backend="vulkan")
    with pytest.raises(BackendError, match="cuda"):
        rasterize(clip, torch.tensor([[0, 1, 2]]), (8, 8), backend="cuda")


def test_fragment_depth32_is_what_the_kernel_compared() -> None:
    g = torch.Generator().manual_seed(9)
    clip = torch.randn(1, 40, 4, generator=g)
    clip[..., 3] = clip[..., 3].abs() + 0.5
    tris = torch.randint(0, 40, (30, 3), generator=g, dtype=torch.int32)
    rast, _ = rasterize(clip, tris, (20, 20))
    ids = rast[..., 3].to(torch.int32)
    d32 = torch_ref.fragment_depth32(clip, tris, ids)
    cov = ids > 0
    assert torch.isinf(d32[~cov]).all()
    torch.testing.assert_close(d32[cov], rast[..., 2][cov], atol=1e-6, rtol=0)
