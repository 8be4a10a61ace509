"""DepthPeeler: layer count and order, agreement between backends, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh

from difflod.render.peel import DepthPeeler
from difflod.render.rasterize import rasterize
from difflod.scene.camera import look_at, perspective


def _quad_stack(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """k parallel quads facing the camera, listed in a shuffled order; returns their depth order."""
    proj = perspective(math.radians(60), 1.0, 0.1, 20.0)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(k, generator=g).tolist()  # order[i] = depth rank of quad i
    pos, tris = [], []
    for i, rank in enumerate(order):
        z = -1.5 - 0.5 * rank
        s = 0.3 * -z  # same screen size for every quad
        pos += [[-s, -s, z], [s, -s, z], [-s, s, z], [s, s, z]]
        tris += [[4 * i, 4 * i + 1, 4 * i + 3], [4 * i, 4 * i + 3, 4 * i + 2]]
    p = torch.tensor(pos)
    clip = torch.cat([p, torch.ones(len(p), 1)], dim=1) @ proj.T
    return clip, torch.tensor(tris), order


@pytest.mark.parametrize(("k", "backend"), [(3, "cpu"), (10, "cpu"), (4, "torch")])
def test_stack_of_k_quads_gives_k_layers_then_empty(k: int, backend: str) -> None:
    clip, tris, order = _quad_stack(k, seed=k)
    quad_of_rank = {rank: i for i, rank in enumerate(order)}
    covered = None
    prev_depth = None
    with DepthPeeler(clip, tris, (32, 32), backend=backend) as peeler:
        for layer in range(k):
            rast, db = peeler.rasterize_next_layer()
            assert db is None
            ids = rast[0, ..., 3].long()
            if covered is None:
                covered = ids > 0
                assert 200 < covered.sum() < 32 * 32
            assert torch.equal(ids > 0, covered)  # same footprint at every layer
            quad = (ids[covered] - 1) // 2
            assert (quad == quad_of_rank[layer]).all()
            depth = rast[0, ..., 2][covered]
            if prev_depth is not None:
                assert (depth > prev_depth).all()
            prev_depth = depth
        for _ in range(2):
            rast, _ = peeler.rasterize_next_layer()
            assert not rast.any()


def test_icosphere_layers_ordered_and_backends_agree() -> None:
    m = trimesh.creation.icosphere(subdivisions=2)
    pos = torch.tensor(m.vertices, dtype=torch.float32)
    pos = torch.cat([pos, pos * 0.5 + 0.3])  # a second sphere inside the first
    faces = torch.tensor(m.faces)
    tris = torch.cat([faces, faces + len(m.vertices)])
    proj = perspective(math.radians(50), 1.0, 0.1, 10.0)
    views = [
        look_at([0.3, 0.2, 3.0], [0, 0, 0], [0, 1, 0]),
        look_at([2.5, -1.0, 1.0], [0, 0, 0], [0, 0, 1]),
    ]
    clip = torch.stack(
        [torch.cat([pos, torch.ones(len(pos), 1)], dim=1) @ (proj @ v).T for v in views]
    )
    layers = {}
    for backend in ("cpu", "torch"):
        out = []
        with DepthPeeler(clip, tris, (40, 40), grad_db=True, backend=backend) as peeler:
            for _ in range(5):
                rast, db = peeler.rasterize_next_layer()
                assert db is not None and db.shape == rast.shape
                out.append(rast)
        layers[backend] = out
    for a, b in zip(layers["cpu"], layers["torch"]):
        assert torch.equal(a[..., 3], b[..., 3])
    stack = torch.stack(layers["cpu"])  # [L,B,H,W,4]
    cov = stack[..., 3] > 0
    count = cov.sum(0)
    assert set(count.unique().tolist()) <= {0, 2, 4}  # closed surfaces: entered and left
    assert (count == 4).any() and (count == 2).any()
    assert not cov[4].any()
    for i in range(3):  # depth increases through the layers; once empty, stays empty
        both = cov[i] & cov[i + 1]
        assert (stack[i + 1][..., 2][both] > stack[i][..., 2][both]).all()
        assert not (cov[i + 1] & ~cov[i]).any()
    first, _ = rasterize(clip, tris, (40, 40), backend="cpu")
    assert torch.equal(first, layers["cpu"][0])


def test_peeled_layers_are_differentiable() -> None:
    clip, tris, _ = _quad_stack(2, seed=0)
    clip = clip.clone().requires_grad_(True)
    with DepthPeeler(clip, tris, (16, 16)) as peeler:
        peeler.rasterize_next_layer()
        rast, _ = peeler.rasterize_next_layer()
    rast[..., :3].sum().backward()
    assert clip.grad is not None and torch.isfinite(clip.grad).all()
    grad_per_quad = clip.grad.reshape(2, 4, 4).abs().sum(dim=(1, 2))
    assert (grad_per_quad > 0).sum() == 1  # only the back quad (layer 2) gets a gradient


def test_bad_input_and_empty_mesh() -> None:
    with pytest.raises(ValueError, match="resolution"):
        DepthPeeler(torch.zeros(3, 4), torch.tensor([[0, 1, 2]]), (0, 8))
    with DepthPeeler(torch.zeros(3, 4), torch.zeros(0, 3, dtype=torch.int64), (4, 5)) as peeler:
        rast, _ = peeler.rasterize_next_layer()
        assert rast.shape == (1, 4, 5, 4) and not rast.any()


def test_capturable_peeler_gives_the_same_layers_bit_for_bit() -> None:
    """capturable=True (the depth floor at every pixel, no value checks) peels
    exactly the layers of the default peeler, to the last bit."""
    clip, tris, _ = _quad_stack(5, seed=7)
    clip = clip + 0.01 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(1))
    layers = {}
    for capturable in (False, True):
        with DepthPeeler(clip, tris, (24, 24), backend="cpu", capturable=capturable) as peeler:
            layers[capturable] = [peeler.rasterize_next_layer()[0] for _ in range(6)]
    assert float((layers[False][4][..., 3] > 0).float().mean()) > 0.1
    assert not (layers[False][5][..., 3] > 0).any()
    for a, b in zip(layers[True], layers[False], strict=True):
        assert torch.equal(a, b)
