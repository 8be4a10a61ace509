"""`difflod info`: a short, human-readable description of a model."""

from __future__ import annotations

from difflod.mesh import Mesh

__all__ = ["describe"]


def _tex(t) -> str:
    if t is None:
        return "-"
    h, w, c = t.shape
    return "constant" if h == 1 and w == 1 else f"{w}x{h}x{c}"


def describe(mesh: Mesh, name: str = "model") -> str:
    """Triangles, vertices, vertex colors, materials, texture sizes, bounds, skin and animation."""
    lo, hi = mesh.aabb()
    lines = [
        f"{name}",
        f"  triangles   {mesh.num_triangles}",
        f"  vertices    {mesh.num_vertices}",
        f"  uvs         {'yes' if mesh.has_uv else 'no'}"
        + (f" ({mesh.v_tex.shape[0]})" if mesh.v_tex is not None else ""),
        f"  normals     {'yes' if mesh.v_nrm is not None else 'no'}",
        f"  colors      {'yes (vertex, RGBA)' if mesh.v_color is not None else 'no'}",
        (f"  bounds      min ({lo[0]:.4g}, {lo[1]:.4g}, {lo[2]:.4g})  "
         f"max ({hi[0]:.4g}, {hi[1]:.4g}, {hi[2]:.4g})"),
        f"  materials   {len(mesh.materials)}",
    ]
    ids = mesh.material_ids()
    for i, m in enumerate(mesh.materials):
        used = int((ids == i).sum()) if mesh.num_triangles else 0
        lines.append(f"    [{i}] {m.name!r}: {used} triangles, kd {_tex(m.kd)}, ks {_tex(m.ks)}, "
                     f"normal {_tex(m.normal)}, "
                     + (f"emissive {_tex(m.emissive)} (peak {float(m.emissive.max()):.3g}), "
                        if m.emissive is not None else "")
                     + f"alpha {m.alpha_mode}"
                     + (f" (cutoff {m.alpha_cutoff:g})" if m.alpha_mode == "MASK" else ""))
    if mesh.skin is not None:
        s = mesh.skin
        anim = (f"animation {s.times.numel()} keyframes over {s.duration:.3g} s"
                if s.times.numel() > 1 else "no animation")
        lines.append(f"  skin        {s.num_joints} joints, {anim}")
    else:
        lines.append("  skin        no")
    return "\n".join(lines)
