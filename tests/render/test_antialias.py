"""antialias + Topology: analytic blends, silhouette choice, gradients, convergence."""

from __future__ import annotations

import pytest
import torch

from difflod.render.antialias import antialias
from difflod.render.interpolate import interpolate
from difflod.render.rasterize import rasterize
from difflod.render.topology import Topology


def _raster(clip: torch.Tensor, tris: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Tiny reference rasterizer for tests: `[V,4]` clip -> `[1,H,W,4]` raster (no grad)."""
    clip = clip.detach().to(torch.float64)
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    p = torch.stack([px, py, torch.ones_like(px)], -1).reshape(-1, 1, 3)      # [N,1,3]
    v = clip[tris.long()][..., [0, 1, 3]]                                      # [F,3,3]
    e = torch.stack([(torch.linalg.cross(v[:, (i + 1) % 3], v[:, (i + 2) % 3]) * p).sum(-1)
                     for i in range(3)], -1)                                   # [N,F,3]
    s = e.sum(-1)
    inside = ((e >= 0).all(-1) | (e <= 0).all(-1)) & (s.abs() > 1e-12)
    zw = (e * clip[tris.long()][..., 2]).sum(-1) / (e * clip[tris.long()][..., 3]).sum(-1)
    zw = torch.where(inside, zw, torch.inf)
    best = zw.argmin(-1)
    hit = inside.any(-1)
    ar = torch.arange(p.shape[0])
    eb, sb = e[ar, best], s[ar, best]
    r = torch.stack([eb[:, 1] / sb, eb[:, 2] / sb, zw[ar, best], (best + 1).to(torch.float64)],
                    -1)
    r = torch.where(hit.unsqueeze(-1), r, torch.zeros_like(r))
    return r.reshape(1, h, w, 4).to(clip.dtype)


def _clip2d(xy, dtype=torch.float32):
    xy = torch.as_tensor(xy, dtype=dtype)
    n = xy.shape[0]
    return torch.cat([xy, torch.full((n, 1), 0.5, dtype=dtype), torch.ones(n, 1, dtype=dtype)],
                     -1)


# --------------------------------------------------------------------------- topology

def test_topology_adjacency():
    tris = torch.tensor([[0, 1, 2], [2, 1, 3], [1, 0, 4], [1, 0, 5]])
    topo = Topology.from_tris(tris)
    # edge 1-2 is shared by triangles 0 and 1 only
    assert int(topo.opposite[0, 1]) == 3 and int(topo.opposite[1, 0]) == 0
    # edge 0-1 has three triangles: non-manifold -> -1
    assert int(topo.opposite[0, 0]) == -1 and int(topo.opposite[2, 0]) == -1
    assert int(topo.opposite[0, 2]) == -1  # boundary 2-0
    assert topo.opposite.shape == (4, 3)
    with pytest.raises(ValueError, match="tris"):
        Topology.from_tris(torch.zeros(2, 3))


# --------------------------------------------------------------------------- analytic blends

# a triangle with a vertical right edge at NDC x = ex, covering the left pixel of a 1x2 image
def _half_pair(ex, dtype=torch.float32):
    clip = _clip2d([[-3.0, -3.0], [ex, -3.0], [ex, 3.0]], dtype)
    tris = torch.tensor([[0, 1, 2]])
    return clip, tris


@pytest.mark.parametrize("ex, expect", [(0.25, [1.0, 0.25]), (-0.25, [0.75, 0.0])])
def test_half_covered_pair_blend(ex, expect):
    clip, tris = _half_pair(ex)
    clip.requires_grad_(True)
    rast = _raster(clip, tris, 1, 2)
    assert rast[0, 0, :, 3].tolist() == [1.0, 0.0]
    color = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1)
    out = antialias(color, rast, clip, tris)
    assert torch.allclose(out.flatten(), torch.tensor(expect))
    # moving the edge right by dx NDC moves the crossing by dx * W/2 pixels
    out.sum().backward()
    gx = clip.grad[:, 0]
    assert torch.allclose(gx, torch.tensor([0.0, 0.5, 0.5]), atol=1e-6)


def test_vertical_pair_blend():
    # triangle with a horizontal top edge at NDC y = 0.25 covering the bottom pixel (row 0)
    clip = _clip2d([[-3.0, -3.0], [3.0, 0.25], [-3.0, 0.25]])
    tris = torch.tensor([[0, 1, 2]])
    rast = _raster(clip, tris, 2, 1)
    assert rast[0, :, 0, 3].tolist() == [1.0, 0.0]
    color = torch.tensor([[0.2, 1.0], [0.6, 0.0]]).reshape(1, 2, 1, 2)
    out = antialias(color, rast, clip, tris)
    # crossing at pixel y 0.75 from row 0: row 1 gets 0.25 of row 0's colour
    assert torch.allclose(out[0, 0, 0], color[0, 0, 0])
    assert torch.allclose(out[0, 1, 0], 0.75 * color[0, 1, 0] + 0.25 * color[0, 0, 0])


def test_interior_edge_is_not_blended_but_fold_is():
    # a quad split along its diagonal: the diagonal is interior, no blend there
    quad = _clip2d([[-3.0, -3.0], [3.0, -3.0], [3.0, 3.0], [-3.0, 3.0]])
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rast = _raster(quad, tris, 8, 8)
    assert set(rast[..., 3].unique().tolist()) == {1.0, 2.0}
    color = rast[..., 3:4].clone()  # different colours per triangle
    assert torch.equal(antialias(color, rast, quad, tris), color)
    # fold the second triangle back over the first: the shared edge becomes a silhouette
    fold = _clip2d([[-3.0, -2.6], [3.0, -3.0], [3.0, 3.3], [2.0, -2.5]])
    fold[3, 2] = 0.1  # in front
    rast = _raster(fold, tris, 8, 8)
    color = rast[..., 3:4] ** 2 + 0.3
    out = antialias(color, rast, fold, tris)
    changed = (out != color)[0, ..., 0]
    # only pixels next to the folded edge (left/above it: empty) change
    assert changed.any()
    empty_nb = torch.zeros_like(changed)
    ids = rast[0, ..., 3]
    empty_nb[:, 1:] |= ids[:, :-1] == 0
    empty_nb[:, :-1] |= ids[:, 1:] == 0
    empty_nb[1:, :] |= ids[:-1, :] == 0
    empty_nb[:-1, :] |= ids[1:, :] == 0
    assert not (changed & ~(empty_nb | (ids == 0))).any()
    # without the fold (same geometry, neighbour on the other side) the diagonal is interior
    flat = fold.clone()
    flat[3, :2] = torch.tensor([-3.0, 3.0])
    rast = _raster(flat, tris, 8, 8)
    color = rast[..., 3:4] ** 2 + 0.3
    out = antialias(color, rast, flat, tris)
    ids = rast[0, ..., 3]
    inner = (ids != 0)
    both = torch.zeros_like(inner)
    both[:, :-1] |= inner[:, :-1] & inner[:, 1:] & (ids[:, :-1] != ids[:, 1:])
    assert both.any()
    assert torch.equal(out[0][both], color[0][both])


def test_batched_clip_positions():
    clip0, tris = _half_pair(0.25)
    clip1, _ = _half_pair(-0.25)
    rast = torch.cat([_raster(clip0, tris, 1, 2), _raster(clip1, tris, 1, 2)])
    color = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1).expand(2, 1, 2, 1)
    out = antialias(color, rast, torch.stack([clip0, clip1]), tris,
                    topology=Topology.from_tris(tris))
    assert torch.allclose(out.flatten(), torch.tensor([1.0, 0.25, 0.75, 0.0]))


# --------------------------------------------------------------------------- gradients

def test_gradcheck_colors_and_positions():
    gen = torch.Generator().manual_seed(0)
    clip = torch.tensor([[-0.63, -0.71, 0.3, 1.0], [0.77, -0.41, 0.5, 1.3],
                         [-0.13, 0.69, 0.4, 0.9], [0.9, 0.8, 0.6, 1.1]], dtype=torch.float64)
    tris = torch.tensor([[0, 1, 2], [1, 3, 2]])
    rast = _raster(clip, tris, 7, 6)
    color = torch.rand(1, 7, 6, 2, generator=gen, dtype=torch.float64)
    clip.requires_grad_(True)
    color.requires_grad_(True)
    topo = Topology.from_tris(tris)
    out = antialias(color, rast, clip, tris, topology=topo)
    assert not torch.equal(out, color)
    assert torch.autograd.gradcheck(
        lambda c, p: antialias(c, rast, p, tris, topology=topo), (color, clip))


# --------------------------------------------------------------------------- convergence

def _render(clip, tris, res, use_aa, topo):
    rast, _ = rasterize(clip, tris, (res, res))  # u, v differentiable in clip
    white = torch.ones(clip.shape[0], 1)
    color, _ = interpolate(white, rast, tris)
    return antialias(color, rast, clip, tris, topology=topo) if use_aa else color


def _pad(xy):
    return torch.cat([xy, torch.full((3, 1), 0.5), torch.ones(3, 1)], -1)


def test_descent_converges_to_target_silhouette():
    res = 32
    tris = torch.tensor([[0, 1, 2]])
    topo = Topology.from_tris(tris)
    target_xy = torch.tensor([[-0.6, -0.5], [0.7, -0.6], [0.1, 0.65]])
    target = _render(_pad(target_xy), tris, res, True, topo)
    xy = torch.tensor([[-0.45, -0.3], [0.5, -0.45], [-0.05, 0.45]], requires_grad=True)
    opt = torch.optim.Adam([xy], lr=0.01)
    for _ in range(250):
        opt.zero_grad()
        loss = ((_render(_pad(xy), tris, res, True, topo) - target) ** 2).mean()
        loss.backward()
        opt.step()
    err = (xy.detach() - target_xy).norm(dim=-1).max()
    assert err < 0.03, (err, xy)  # under half a pixel (1 px = 2/32 NDC)


def test_no_visibility_gradient_without_antialias():
    res = 16
    tris = torch.tensor([[0, 1, 2]])
    target = _render(_pad(torch.tensor([[-0.6, -0.5], [0.7, -0.6], [0.1, 0.65]])),
                     tris, res, False, None)
    xy = torch.tensor([[-0.45, -0.3], [0.5, -0.45], [-0.05, 0.45]], requires_grad=True)
    loss = ((_render(_pad(xy), tris, res, False, None) - target) ** 2).mean()
    assert loss > 0
    # the flat colour depends on the positions only through the barycentrics,
    # with zero gradient: visibility alone gives no position gradient
    assert loss.requires_grad
    (grad,) = torch.autograd.grad(loss, xy, allow_unused=True)
    assert grad is None or torch.equal(grad, torch.zeros_like(xy))
    loss = ((_render(_pad(xy), tris, res, True, Topology.from_tris(tris)) - target) ** 2).mean()
    loss.backward()
    assert xy.grad.abs().sum() > 0


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs, match", [
    ({"color": torch.zeros(2, 2, 1)}, "color"),
    ({"rast": torch.zeros(1, 2, 3, 4)}, "rast"),
    ({"clip_pos": torch.zeros(3, 3)}, "clip_pos"),
    ({"clip_pos": torch.zeros(4, 3, 4)}, "clip_pos"),
    ({"tris": torch.zeros(1, 3)}, "tris"),
    ({"tris": torch.tensor([[0, 1, 7]])}, "tris"),
    ({"topology": Topology.from_tris(torch.tensor([[0, 1, 2], [0, 2, 1]]))}, "topology"),
])
def test_validation(kwargs, match):
    args = {"color": torch.zeros(1, 2, 2, 1), "rast": torch.zeros(1, 2, 2, 4),
                "clip_pos": _clip2d([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
                "tris": torch.tensor([[0, 1, 2]]), "topology": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        antialias(args["color"], args["rast"], args["clip_pos"], args["tris"],
                  topology=args["topology"])
