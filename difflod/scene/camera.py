"""Camera and transform matrices: OpenGL conventions, column vectors.

Every function returns a new `[4,4]` float32 tensor on the requested device.
Points transform as `clip = P @ V @ M @ [x, y, z, 1]` (DESIGN.md), NDC has y up
and the raster's row 0 is the bottom row, so unlike nvdiffmodeling's
`util.projection` the projection here does not flip y (nvdiffmodeling flips it
because it writes raster row 0 as the top image row; difflod's image writers
flip instead).

Rotations are right-handed (counter-clockwise looking down the axis towards
the origin). Matrices are built in float64 and rounded once to float32.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "DEFAULT_FOVY",
    "look_at",
    "perspective",
    "random_rotation",
    "rotate_x",
    "rotate_y",
    "scale",
    "translate",
]

#: nvdiffmodeling's field of view: its projection uses tan(fovy / 2) = 0.4.
DEFAULT_FOVY = 2.0 * math.atan(0.4)


def _out(m: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    return m.to(dtype=torch.float32, device=device)


def perspective(fovy_rad: float, aspect: float = 1.0, near: float = 0.1, far: float = 1000.0,
                device: torch.device | str | None = None) -> torch.Tensor:
    """OpenGL perspective projection `[4,4]` float32.

    Args:
        fovy_rad: vertical field of view in radians, in (0, pi).
        aspect: width / height of the image, > 0.
        near, far: clip plane distances, 0 < near < far.

    Raises:
        ValueError: naming the argument out of range.
    """
    if not 0.0 < fovy_rad < math.pi:
        raise ValueError(f"fovy_rad must be in (0, pi), got {fovy_rad}")
    if not aspect > 0.0:
        raise ValueError(f"aspect must be > 0, got {aspect}")
    if not 0.0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    f = 1.0 / math.tan(fovy_rad / 2.0)
    m = torch.zeros(4, 4, dtype=torch.float64)
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = -(far + near) / (far - near)
    m[2, 3] = -(2.0 * far * near) / (far - near)
    m[3, 2] = -1.0
    return _out(m, device)


def _vec3(name: str, x: object) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float64).detach().cpu()
    if t.shape != (3,):
        raise ValueError(f"{name} must be a 3-vector, got shape {tuple(t.shape)}")
    return t


def look_at(eye: object, at: object, up: object,
            device: torch.device | str | None = None) -> torch.Tensor:
    """View matrix `[4,4]` float32 putting `eye` at the origin looking down -z at `at`.

    Args:
        eye, at, up: 3-vectors (sequences or tensors); up must not be parallel
            to eye - at.

    Raises:
        ValueError: if eye == at or up is parallel to the view direction.
    """
    e, a, u = _vec3("eye", eye), _vec3("at", at), _vec3("up", up)
    w = e - a
    if float(w.norm()) < 1e-12:
        raise ValueError("look_at: eye and at coincide")
    w = w / w.norm()
    x = torch.linalg.cross(u, w)
    if float(x.norm()) < 1e-12:
        raise ValueError("look_at: up is parallel to the view direction")
    x = x / x.norm()
    y = torch.linalg.cross(w, x)
    m = torch.eye(4, dtype=torch.float64)
    m[0, :3], m[1, :3], m[2, :3] = x, y, w
    m[:3, 3] = -(m[:3, :3] @ e)
    return _out(m, device)


def translate(x: float, y: float, z: float,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Translation by (x, y, z), `[4,4]` float32."""
    m = torch.eye(4, dtype=torch.float64)
    m[0, 3], m[1, 3], m[2, 3] = float(x), float(y), float(z)
    return _out(m, device)


def scale(s: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform scale by s, `[4,4]` float32."""
    m = torch.eye(4, dtype=torch.float64)
    m[0, 0] = m[1, 1] = m[2, 2] = float(s)
    return _out(m, device)


def rotate_x(angle: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Right-handed rotation by `angle` radians about +x, `[4,4]` float32."""
    c, s = math.cos(angle), math.sin(angle)
    m = torch.eye(4, dtype=torch.float64)
    m[1, 1], m[1, 2], m[2, 1], m[2, 2] = c, -s, s, c
    return _out(m, device)


def rotate_y(angle: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Right-handed rotation by `angle` radians about +y, `[4,4]` float32."""
    c, s = math.cos(angle), math.sin(angle)
    m = torch.eye(4, dtype=torch.float64)
    m[0, 0], m[0, 2], m[2, 0], m[2, 2] = c, s, -s, c
    return _out(m, device)


def random_rotation(generator: torch.Generator, translation: float = 0.0,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """A random rigid transform `[4,4]` float32: rotation uniform over SO(3).

    As nvdiffmodeling's `random_rotation_translation`: the first row is a
    Gaussian vector (uniform direction), the second is uniform in the plane
    orthogonal to it, the third completes a right-handed frame; this is the
    Haar measure on SO(3). An optional translation uniform in
    [-translation, translation]^3 is added (nvdiffmodeling trains with 0.25).

    Args:
        generator: a CPU torch.Generator; the draw is reproducible from its state.
        translation: half-width of the uniform translation jitter, >= 0.
    """
    if translation < 0:
        raise ValueError(f"translation must be >= 0, got {translation}")
    g = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    r0 = g[0]
    r1 = torch.linalg.cross(r0, g[2])
    r2 = torch.linalg.cross(r0, r1)
    rot = torch.stack([r0, r1, r2])
    rot = rot / rot.norm(dim=1, keepdim=True).clamp_min(1e-300)
    t = (torch.rand(3, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * translation
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = rot
    m[:3, 3] = t
    return _out(m, device)
