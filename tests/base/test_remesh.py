"""base.remesh: the even remesh of a closed surface, and when simplify trains from it."""

from __future__ import annotations

import numpy as np
import pytest

from difflod.assets import make
from difflod.base.baseline import baseline
from difflod.base.decimate import decimate, weld
from difflod.base.remesh import even_geometry, is_closed_manifold, prefers_remesh, remesh
from difflod.config import load_config
from difflod.errors import DiffLodError
from difflod.geometry.transform import unit_size
from difflod.run.simplify import base_mesh
from tests.geometry._shapes import cube


def _surface(name: str, triangles: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    mesh = unit_size(make(name, triangles=triangles, texture_res=8))
    return weld(mesh.v_pos.numpy(), mesh.t_pos_idx.numpy())


def _min_angles(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Each triangle's smallest angle, in degrees (60: equilateral)."""
    angles = []
    for k in range(3):
        e1, e2 = v[f[:, (k + 1) % 3]] - v[f[:, k]], v[f[:, (k + 2) % 3]] - v[f[:, k]]
        cos = (e1 * e2).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.min(angles, axis=0)


def test_closed_manifold_check() -> None:
    f = cube()[1].numpy()
    assert is_closed_manifold(f)
    assert not is_closed_manifold(f[1:])                               # a hole
    fin = np.concatenate([f, [[0, 1, 100]]])                            # a third face on an edge
    assert not is_closed_manifold(fin)
    assert not is_closed_manifold(np.zeros((0, 3), dtype=np.int64))


def test_remesh_of_a_sphere_is_even_within_the_budget_and_on_the_surface() -> None:
    v, f = _surface("vcolor")
    radius = float(np.linalg.norm(v, axis=1).mean())
    even = remesh(v, f, 200)
    assert even is not None
    ve, fe = even
    assert 0.97 * 200 <= len(fe) <= 200 and is_closed_manifold(fe)
    # the point of it: better shaped triangles than QEM's of the same budget
    # (measured: mean smallest angle 51.7 against 46.5 degrees; fewer slivers)
    ours, qem = _min_angles(ve, fe), _min_angles(*decimate(v, f, 200))
    assert ours.mean() > qem.mean() + 3.0, (ours.mean(), qem.mean())
    assert (ours < 30).mean() <= (qem < 30).mean() and ours.min() > 20.0
    # projected onto the reference: every vertex on its surface, within 2% (a
    # faceted sphere; the few collapses down to the budget place their vertex
    # by QEM, a little off it)
    np.testing.assert_allclose(np.linalg.norm(ve, axis=1), radius, rtol=0.02)
    # the same remesh every time (a resumed run rebuilds its base)
    again = remesh(v, f, 200)
    assert again is not None and np.array_equal(again[0], ve) and np.array_equal(again[1], fe)


def test_remesh_keeps_creases() -> None:
    """A cube's edges are creases (90 degrees): the remesh slides along them, so
    every vertex stays on the cube and all 8 corners are kept."""
    v, f = (t.numpy() for t in cube())
    even = remesh(v, f, 300)
    assert even is not None and len(even[1]) == 300
    ve = even[0]
    np.testing.assert_allclose(np.abs(ve).max(axis=1), 1.0, atol=1e-5)
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    assert all(np.abs(ve - c).max(axis=1).min() < 1e-4 for c in corners)


def test_remesh_refuses_a_surface_with_borders() -> None:
    v, f = _surface("vcolor")
    assert remesh(v, f[10:], 200) is None
    open_ref = make("vcolor", triangles=4000, texture_res=8)
    open_ref = open_ref.replace(t_pos_idx=open_ref.t_pos_idx[10:])
    with pytest.raises(DiffLodError, match="closed, edge-manifold"):
        baseline(open_ref, 200, texture_res=16, method="remesh", bake_normals=False)


def test_remesh_is_preferred_on_a_smooth_sphere_not_where_it_loses_features() -> None:
    for name, wanted in (("vcolor", True), ("spiky", False), ("beacon", False)):
        v, f = _surface(name)
        even = remesh(v, f, 200)
        assert even is not None
        assert prefers_remesh((v, f), decimate(v, f, 200), even) is wanted, name


def test_simplify_trains_from_the_remesh_where_auto_prefers_it() -> None:
    """base_method auto: the remesh (baked) for the sphere, QEM for spiky; the
    base for the files stays QEM + bake at the budget either way; 'remesh'
    forces it, 'qem' never takes it."""
    cfg = load_config(None, {"texture_res": [32, 32]})
    sphere = make("vcolor", triangles=4000, texture_res=8)
    base, start, how = base_mesh(sphere, 200, cfg)
    assert how == "remesh" and base.num_triangles == 200
    assert 0.97 * 200 <= start.num_triangles <= 200 and start.has_uv
    assert start.materials[0].kd.shape[:2] == (32, 32)
    given = even_geometry(sphere, base, 200)
    assert given is not None and given[1].shape == start.t_pos_idx.shape
    _, start_q, how_q = base_mesh(sphere, 200, cfg.replace(base_method="qem"))
    assert how_q == "qem" and start_q.num_triangles == 200
    _, start_spiky, how_spiky = base_mesh(make("spiky", triangles=4000, texture_res=8), 200, cfg)
    assert how_spiky == "qem" and start_spiky.num_triangles == 200
    _, start_forced, how_forced = base_mesh(make("spiky", triangles=4000, texture_res=8), 200,
                                            cfg.replace(base_method="remesh"))
    assert how_forced == "remesh" and start_forced.num_triangles <= 200
