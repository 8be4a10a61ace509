"""BufferPool (backends/cpu_buffers.py): memory is reused only once nothing holds it."""

from __future__ import annotations

import math

import numpy as np
import torch

from difflod.render.backends.cpu_buffers import BufferPool
from difflod.render.rasterize import rasterize
from difflod.scene.camera import look_at, perspective


def test_buffer_reused_only_after_every_tensor_and_view_is_gone() -> None:
    pool = BufferPool(per_key=2)
    a = pool.take((4, 5), np.float32)
    t = torch.from_numpy(a)
    view = t[1:3]
    del a, t
    b = pool.take((4, 5), np.float32)  # the view still holds the first buffer
    assert not np.shares_memory(b, view.numpy())
    b_ptr = b.ctypes.data
    del b
    assert pool.take((4, 5), np.float32).ctypes.data == b_ptr  # dropped: reused
    c = pool.take((4, 5), np.float64)  # another dtype: another buffer
    assert c.dtype == np.float64
    del view
    kept = [pool.take((4, 5), np.float32) for _ in range(3)]  # more than per_key: fresh ones
    assert len({k.ctypes.data for k in kept}) == 3


def test_rasterize_results_held_by_the_caller_are_never_overwritten() -> None:
    proj = perspective(math.radians(45), 1.0, 0.1, 10.0)
    pos = torch.tensor([[-1.0, -1, 0], [1, -1, 0], [0, 1, 0], [-1, 1, 0.2], [1, 1, 0.2]])
    tris = torch.tensor([[0, 1, 2], [2, 4, 3]], dtype=torch.int32)
    clips = []
    for ang in (0.0, 0.7):
        mvp = proj @ look_at([3 * math.sin(ang), 0.3, 3 * math.cos(ang)], [0, 0, 0], [0, 1, 0])
        clips.append(torch.cat([pos, torch.ones(5, 1)], 1) @ mvp.T)
    first, first_db = rasterize(clips[0], tris, (32, 32), grad_db=True, backend="cpu")
    kept, kept_db = first.clone(), first_db.clone()
    second, _ = rasterize(clips[1], tris, (32, 32), grad_db=True, backend="cpu")
    assert torch.equal(first, kept) and torch.equal(first_db, kept_db)
    assert not torch.equal(first, second)
    del first, first_db, second
    again, again_db = rasterize(clips[0], tris, (32, 32), grad_db=True, backend="cpu")
    assert torch.equal(again, kept) and torch.equal(again_db, kept_db)  # reused memory, same result
