"""Procedural test meshes for the geometry tests (no files)."""

from __future__ import annotations

import math

import torch


def cube(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed unit cube [-1,1]^3: 8 vertices, 12 outward-facing triangles."""
    v = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)],
                     dtype=dtype)
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v, f


def grid(n: int = 4, dtype: torch.dtype = torch.float32):
    """Plane z=0 over [-1,1]^2, (n+1)^2 vertices, CCW seen from +Z.

    UV (glTF convention): u = (x+1)/2, v = (1-y)/2, so the image's first row is at y=+1.
    Returns v_pos [V,3], faces [F,3], v_tex [V,2].
    """
    xs = torch.linspace(-1.0, 1.0, n + 1, dtype=dtype)
    yy, xx = torch.meshgrid(xs, xs, indexing="ij")
    v = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.zeros((n + 1) ** 2, dtype=dtype)], 1)
    faces = []
    for r in range(n):
        for c in range(n):
            a, b = r * (n + 1) + c, r * (n + 1) + c + 1
            d, e = a + n + 1, b + n + 1
            faces += [[a, b, e], [a, e, d]]
    uv = torch.stack([(v[:, 0] + 1) / 2, (1 - v[:, 1]) / 2], 1)
    return v, torch.tensor(faces), uv


def uv_sphere(rings: int = 8, segments: int = 16, dtype: torch.dtype = torch.float32):
    """Latitude/longitude sphere with a UV seam (duplicate seam column).

    u = longitude / 2pi (eastward), v = polar angle / pi (v=0 at the north pole).
    Returns v_pos [V,3], faces [F,3], v_tex [V,2] (one UV per vertex; seam vertices duplicated).
    """
    pos, uv = [], []
    for r in range(rings + 1):
        theta = math.pi * r / rings
        for s in range(segments + 1):
            phi = 2 * math.pi * s / segments
            pos.append([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi),
                        math.cos(theta)])
            uv.append([s / segments, r / rings])
    faces = []
    w = segments + 1
    for r in range(rings):
        for s in range(segments):
            a, b, c, d = r * w + s, r * w + s + 1, (r + 1) * w + s, (r + 1) * w + s + 1
            if r > 0:
                faces.append([a, c, b])
            if r < rings - 1:
                faces.append([b, c, d])
    return torch.tensor(pos, dtype=dtype), torch.tensor(faces), torch.tensor(uv, dtype=dtype)
