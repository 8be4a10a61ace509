"""Backends: selection, and every visibility kernel held to the torch oracle."""

from __future__ import annotations

import pytest
import torch

from difflod.errors import BackendError
from difflod.render.backends import get_backend, torch_ref
from difflod.render.backends.cuda import visibility_pairs
from difflod.render.rasterize import rasterize


def _scene(seed: int, b: int = 2, v: int = 80, f: int = 70) -> tuple[torch.Tensor, torch.Tensor]:
    """Random overlapping triangles, some crossing w = 0, some entirely behind the camera."""
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(b, v, 4, generator=g)
    clip[..., 3] = clip[..., 3].abs() + 0.3
    clip[:, : v // 8, 3] *= -1
    clip[..., 2] *= 0.5
    tris = torch.randint(0, v, (f, 3), generator=g, dtype=torch.int32)
    tris[0] = torch.tensor([0, 1, 2])  # all three w < 0
    tris[1] = tris[2]  # a duplicate: the depth tie goes to the smaller id
    return clip.contiguous(), tris.contiguous()


def test_get_backend_by_argument_env_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFLOD_BACKEND", raising=False)
    assert get_backend(None, "cpu").name == "cpu"
    assert get_backend("auto", torch.device("cpu")).name == "cpu"
    assert get_backend("torch", "cpu").name == "torch"
    monkeypatch.setenv("DIFFLOD_BACKEND", "torch")
    assert get_backend(None, "cpu").name == "torch"
    assert get_backend("cpu", "cpu").name == "cpu"  # the argument wins over the environment
    monkeypatch.setenv("DIFFLOD_BACKEND", "opengl")
    with pytest.raises(BackendError, match="'opengl' .*DIFFLOD_BACKEND"):
        get_backend(None, "cpu")


def test_get_backend_refuses_what_it_cannot_serve() -> None:
    with pytest.raises(BackendError, match="unknown"):
        get_backend("metal", "cpu")
    with pytest.raises(BackendError, match="'cuda' cannot serve tensors on cpu"):
        get_backend("cuda", "cpu")
    with pytest.raises(BackendError, match="'cpu' cannot serve tensors on cuda"):
        get_backend("cpu", "cuda")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cpu_and_pairs_match_torch_oracle(seed: int) -> None:
    clip, tris = _scene(seed)
    ref = torch_ref.visibility(clip, tris, 33, 47)
    assert (ref > 0).float().mean() > 0.5
    assert not (ref == 1).any()  # entirely behind the camera
    assert not (ref == 3).any()  # loses the tie to its duplicate, triangle 1
    cpu = get_backend("cpu", "cpu").visibility(clip, tris, 33, 47)
    assert cpu.dtype == torch.int32 and cpu.shape == (2, 33, 47)
    assert torch.equal(cpu, ref)
    assert torch.equal(visibility_pairs(clip, tris, 33, 47, budget=1000), ref)


def test_depth_floor_matches_across_backends() -> None:
    clip, tris = _scene(4)
    ref = torch_ref.visibility(clip, tris, 30, 30)
    floor = torch_ref.fragment_depth32(clip, tris, ref)
    ref2 = torch_ref.visibility(clip, tris, 30, 30, floor)
    assert (ref2 > 0).any() and not torch.equal(ref2, ref)
    cpu2 = get_backend("cpu", "cpu").visibility(clip, tris, 30, 30, floor)
    assert torch.equal(cpu2, ref2)
    assert torch.equal(visibility_pairs(clip, tris, 30, 30, floor, budget=777), ref2)


def test_large_triangle_count_cpu_matches_oracle() -> None:
    g = torch.Generator().manual_seed(11)
    v = 3000
    centers = torch.rand(v // 3, 1, 3, generator=g) * 2 - 1
    pts = centers + 0.05 * torch.randn(v // 3, 3, 3, generator=g)
    w = 1.0 + torch.rand(v // 3, 3, 1, generator=g)
    clip = (
        torch.cat([pts[..., :2] * w, pts[..., 2:] * w * 0.9, w], dim=-1)
        .reshape(1, v, 4)
        .contiguous()
    )
    tris = torch.arange(v, dtype=torch.int32).reshape(-1, 3)
    ref = torch_ref.visibility(clip, tris, 64, 64)
    assert torch.equal(get_backend("cpu", "cpu").visibility(clip, tris, 64, 64), ref)


def test_cuda_backend_matches_oracle(cuda: torch.device) -> None:
    for seed in range(3):
        clip, tris = _scene(seed)
        ref = torch_ref.visibility(clip, tris, 33, 47)
        be = get_backend("cuda", cuda)
        got = be.visibility(clip.to(cuda), tris.to(cuda), 33, 47)
        assert got.device.type == "cuda" and got.dtype == torch.int32
        assert torch.equal(got.cpu(), ref)
        floor = torch_ref.fragment_depth32(clip, tris, ref)
        got2 = be.visibility(clip.to(cuda), tris.to(cuda), 33, 47, floor.to(cuda))
        assert torch.equal(got2.cpu(), torch_ref.visibility(clip, tris, 33, 47, floor))
        r_gpu, db_gpu = rasterize(clip.to(cuda), tris.to(cuda), (33, 47), grad_db=True)
        r_ref, db_ref = rasterize(clip, tris, (33, 47), grad_db=True, backend="torch")
        torch.testing.assert_close(r_gpu.cpu(), r_ref, atol=1e-5, rtol=0)
        torch.testing.assert_close(db_gpu.cpu(), db_ref, atol=1e-4, rtol=1e-4)


_SIM_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_backends import _scene
from difflod.render.backends import torch_ref
from difflod.render.backends.cuda import visibility_kernel
bad = []
for seed in range(2):
    clip, tris = _scene(seed, b=2, v=30, f=20)
    ref = torch_ref.visibility(clip, tris, 13, 17)
    if not torch.equal(visibility_kernel(clip, tris, 13, 17), ref):
        bad.append(("ids", seed))
    floor = torch_ref.fragment_depth32(clip, tris, ref)
    ref2 = torch_ref.visibility(clip, tris, 13, 17, floor)
    if not torch.equal(visibility_kernel(clip, tris, 13, 17, floor), ref2):
        bad.append(("floor", seed))
# one big triangle over many tiles, plus tiny ones: binary search over tile counts
clip = torch.tensor([[[-2.0, -2.0, 0.5, 1.0], [3.0, -2.0, 0.5, 1.0], [-2.0, 3.0, 0.5, 1.0],
                      [0.1, 0.1, 0.0, 1.0], [0.2, 0.1, 0.0, 1.0], [0.1, 0.25, 0.0, 1.0]]])
tris = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
ref = torch_ref.visibility(clip, tris, 24, 20)
if not torch.equal(visibility_kernel(clip, tris, 24, 20), ref) or not (ref == 2).any():
    bad.append(("tiles", 0))
print("BAD", bad)
"""


def test_cuda_kernel_matches_oracle_in_numba_simulator(run_simulated) -> None:
    """The numba-cuda kernels, run by numba's CUDA simulator on the CPU, match the oracle."""
    from pathlib import Path

    stdout = run_simulated(_SIM_SCRIPT.format(tests=str(Path(__file__).parent)), timeout=300)
    assert "BAD []" in stdout, stdout
