"""render_mesh: the full differentiable render of a Mesh from a batch of Views.

Steps (nvdiffmodeling's render.py in spirit):

1. clip = mvp @ [v_pos, 1] per view (skinned meshes are posed by the caller).
2. Rasterize at (H*spp, W*spp) with screen derivatives; with `layers > 1`
   depth-peel up to `layers` layers (stopping early once a layer is empty,
   unless `capturable`: see render_mesh).
3. Per layer: interpolate positions, vertex normals (geometry.normals when
   the mesh has none), tangents (geometry.tangents, only when a material has
   a normal map and the mesh has none), UVs with their screen derivatives;
   vertex colors when the mesh has them;
   look up kd (times the vertex color), ks, the normal map and the emissive map with trilinear
   mip-mapping (or the caller's mip stacks; on the CPU a material's trained maps of one size
   in one call; render/materials.py); shade (render/shade_op.py: shading.shade,
   one fused kernel each way on the CPU and the GPU, which adds
   the emissive radiance unlit; materials without one emit 0 where another
   material of the mesh has one).
4. Composite back to front over the background: accum = lerp(accum, color,
   alpha), antialiasing (render.antialias) after each layer, as
   nvdiffmodeling does; the alpha channel is carried along so the output
   alpha is the antialiased coverage. A layer whose pixels were gathered
   (compact, or a recorded render's slots) is blended at those pixels only
   and written into a copy of what lies under it (_composite).
5. With spp > 1, box-filter down to (H, W) (supersampling; the background
   is upsampled by repetition first).

Alpha: OPAQUE materials have alpha 1 (a 4th kd channel is ignored); BLEND
uses kd's alpha as is; MASK uses a straight-through threshold: the forward
value is the hard cutout (alpha >= cutoff, so reference and candidate look
the same), the backward pass uses the gradient of the soft alpha, so a
trainable cutout texture still learns.

Vertex colors (Mesh.v_color): interpolated per pixel like the other
attributes and multiplied into kd, and into its alpha where the material has
alpha (before a MASK cutoff), as glTF specifies (baseColor = factor x
texture x COLOR_0).

Multi-material meshes: every material's textures are sampled at every pixel
and the per-pixel material (Mesh.t_mat of the pixel's triangle) selects one
with torch.where. Simple and exact; the cost grows with the number of
materials, which is small for the models difflod handles.

Mesh without UVs: texture coordinates are 0, which is fine for constant
(1x1) textures; larger textures or a normal map then raise ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from difflod.geometry.normals import face_normals, vertex_normals
from difflod.mesh import Mesh
from difflod.render.interpolate import interpolate
from difflod.render.materials import MipStacks, check_mips, sample_material
from difflod.render.peel import DepthPeeler
from difflod.render.rows import put_rows, rows
from difflod.render.shade_op import shade
from difflod.scene.views import Views
from difflod.shading import compiled as compilation

if TYPE_CHECKING:
    from difflod.geometry.tangents import CornerGroups
    from difflod.render.topology import Topology

__all__ = ["RenderOutput", "clip_positions", "corner_groups", "render_mesh"]

@dataclass(frozen=True)
class RenderOutput:
    """What render_mesh returns.

    Attributes:
        color: `[B,H,W,3]` float32 linear RGB, composited over the background.
        alpha: `[B,H,W,1]` float32 coverage (antialiased, times material alpha).
        rast: `[B,H*spp,W*spp,4]` raster of the first layer, (u, v, z/w, tri id + 1).
        covered: with `pixel_capacity`, the most covered pixels in one layer
            (an int64 device scalar; more than the capacity: some were left
            unshaded); else None.
    """

    color: torch.Tensor
    alpha: torch.Tensor
    rast: torch.Tensor
    covered: torch.Tensor | None = None


def clip_positions(v_pos: torch.Tensor, mvp: torch.Tensor) -> torch.Tensor:
    """Clip-space positions `[B,V,4]` from `[V,3]` positions (or `[B,V,3]`, one
    set per view) and `[B,4,4]` matrices."""
    hom = torch.cat([v_pos, torch.ones_like(v_pos[..., :1])], dim=-1)
    if v_pos.dim() == 3:
        return torch.einsum("bij,bvj->bvi", mvp.to(v_pos.dtype), hom)
    return torch.einsum("bij,vj->bvi", mvp.to(v_pos.dtype), hom)


def _per_view_ids(rast: torch.Tensor, tris_per_view: int) -> torch.Tensor:
    """The raster with view b's triangle ids moved to copy b's (+ b * F), for
    shading a per-view mesh (render_mesh's `per_view`); u, v, z keep their gradients."""
    view = torch.arange(rast.shape[0], device=rast.device, dtype=rast.dtype)[:, None, None]
    ids = rast[..., 3]
    ids = torch.where(ids > 0, ids + view * tris_per_view, ids)
    return torch.cat([rast[..., 0:3], ids[..., None]], dim=-1)


def _check_args(mesh: object, views: object, resolution: Sequence[int], spp: int,
                layers: int) -> tuple[int, int]:
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a difflod Mesh, got {type(mesh).__name__}")  # noqa: TRY004
    if not isinstance(views, Views):
        raise ValueError(f"views must be a difflod Views, got {type(views).__name__}")  # noqa: TRY004
    if mesh.device != views.device:
        raise ValueError(f"mesh is on {mesh.device} but views are on {views.device}")
    if len(resolution) != 2 or any(not isinstance(r, int) or r < 1 for r in resolution):
        raise ValueError(f"resolution must be (H, W) positive ints, got {resolution!r}")
    if not isinstance(spp, int) or spp < 1:
        raise ValueError(f"spp must be an int >= 1, got {spp!r}")
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be an int >= 1, got {layers!r}")
    return int(resolution[0]), int(resolution[1])


def _background(background: torch.Tensor | None, b: int, h: int, w: int, spp: int,
                like: torch.Tensor) -> torch.Tensor:
    if background is None:
        return torch.zeros(b, h * spp, w * spp, 3, dtype=like.dtype, device=like.device)
    if not isinstance(background, torch.Tensor) or background.dim() != 4 \
            or background.shape[0] not in (1, b) or background.shape[1:] != (h, w, 3):
        got = tuple(background.shape) if isinstance(background, torch.Tensor) else background
        raise ValueError(f"background must be [{b},{h},{w},3] (or [1,{h},{w},3]), got {got}")
    if background.device != like.device:
        raise ValueError(f"background is on {background.device}, mesh on {like.device}")
    bg = background.to(like.dtype).expand(b, h, w, 3)
    if spp > 1:
        bg = bg.repeat_interleave(spp, dim=1).repeat_interleave(spp, dim=2)
    return bg


class _Prepared:
    """Per-mesh data shared by all layers (normals, tangents, face normals)."""

    def __init__(self, mesh: Mesh, check: bool, compiled: bool,
                 corners: CornerGroups | None = None) -> None:
        from difflod.geometry.tangents import vertex_tangents

        # the frame through torch.compile's kernels when asked (see shading.compiled)
        def fuse(fn):
            return compilation.compiled(fn) if compiled else fn
        self.mesh = mesh
        self.tris = mesh.t_pos_idx
        self.face_n = fuse(face_normals)(mesh.v_pos, mesh.t_pos_idx, check=check)
        if mesh.v_nrm is not None and mesh.t_nrm_idx is not None:
            self.v_nrm, self.t_nrm = mesh.v_nrm, mesh.t_nrm_idx
        else:
            self.v_nrm = fuse(vertex_normals)(mesh.v_pos, mesh.t_pos_idx, check=check)
            self.t_nrm = mesh.t_pos_idx
        self.needs_tangents = any(m.normal is not None for m in mesh.materials)
        big = [m.name for m in mesh.materials
               if any(t is not None and (t.shape[0] > 1 or t.shape[1] > 1)
                      for t in (m.kd, m.ks, m.normal, m.emissive))]
        if not mesh.has_uv and (big or self.needs_tangents):
            raise ValueError(f"mesh has no UVs (v_tex/t_tex_idx) but material "
                             f"{(big or [m.name for m in mesh.materials])[0]!r} has a texture "
                             "larger than 1x1 or a normal map")
        self.v_tng = self.t_tng = None
        if self.needs_tangents:
            if mesh.v_tng is not None and mesh.t_tng_idx is not None:
                self.v_tng, self.t_tng = mesh.v_tng, mesh.t_tng_idx
            else:
                assert mesh.v_tex is not None and mesh.t_tex_idx is not None  # checked above
                self.v_tng, self.t_tng = fuse(vertex_tangents)(
                    mesh.v_pos, mesh.t_pos_idx, mesh.v_tex, mesh.t_tex_idx, self.v_nrm,
                    self.t_nrm, check=check, groups=corners)
        self.has_alpha = any(m.has_alpha for m in mesh.materials)
        self.has_emissive = any(m.emissive is not None for m in mesh.materials)
        self.t_mat = mesh.t_mat if len(mesh.materials) > 1 else None


def _render_layer(prep: _Prepared, rast: torch.Tensor, rast_db: torch.Tensor, views: Views,
                  min_roughness: float, mips: MipStacks | None,
                  light_falloff: bool, backend: str | None, compiled: bool, compact: bool,
                  capacity: int | None = None) -> _Shaded:
    """Shade one raster layer: the colour and alpha of the pixels it shades and
    where they go (_Shaded; every pixel's, 0 where empty, when it shades them
    all), and the layer's count of covered pixels as a device scalar where
    `capacity` is given.

    Three ways to pick the pixels that are shaded, all with the same values and
    gradients for the pixels they shade:

    - compact: only covered pixels are interpolated, textured and shaded: they
      are gathered once into a `[P,1,1,.]` "image batch" (one pixel per image,
      so per-view eye/light positions become per-pixel), and the results are
      scattered back (render.rows). Measured on the trainer (res 128, batch
      2) most pixels are background, so this skips most of the per-pixel work.
    - capacity (not compact): the same gathering into a batch of a fixed size,
      `capacity` slots, with no host sync (slots from a running count of the
      covered pixels; unused slots shade some pixel and are dropped), for a
      render captured in a CUDA graph. Covered pixels past the capacity are
      left empty; the count returned tells the caller it happened.
    - neither: every pixel is shaded (an empty one as a point of some triangle,
      finite values and gradients) and empty ones are zeroed: fixed shapes and
      no host sync, at the price of shading the background.
    """
    mesh = prep.mesh
    b, h, w, _ = rast.shape
    dtype, device = rast.dtype, rast.device
    tri_all = rast[..., 3].reshape(-1).long() - 1
    n_all = b * h * w
    covered = None
    # where the gathered results go back to (None: shaded in place)
    dest: torch.Tensor | None = None
    if compact:
        pix = (tri_all >= 0).nonzero().squeeze(1)                     # [P]
        n_pix = int(pix.numel())
        if n_pix == 0:
            empty = torch.zeros(0, 4, dtype=dtype, device=device)
            return _Shaded(empty[:, 0:3], empty[:, 3:4], pix, None)
        dest = pix
        tri = rows(tri_all, pix)
    elif capacity is not None and capacity < n_all:
        n_pix = capacity
        hit = tri_all >= 0
        slot = torch.cumsum(hit, 0) - 1                               # [N] covered pixel's slot
        covered = slot[-1] + 1
        # each kept pixel writes its index into its slot; the rest into a spare
        # slot at the end; unused slots keep a spread pixel (read, then dropped)
        first = torch.arange(n_pix + 1, device=device)
        pix = torch.remainder(first, n_all).scatter(
            0, torch.where(hit & (slot < n_pix), slot, n_pix),
            torch.arange(n_all, device=device))[:n_pix]
        used = first[:n_pix] < covered
        dest = torch.where(used, pix, n_all)                          # n_all: dropped
        tri = rows(tri_all, pix)
    else:
        pix = dest = None
        n_pix = n_all
        tri = tri_all
        if capacity is not None:
            covered = (tri_all >= 0).sum()
    if not compact:
        # an empty pixel reads a face spread by its index (its gradient is 0): one
        # shared face 0 would serialize the backward's atomic adds on its row
        spread = torch.remainder(torch.arange(n_pix, device=device), prep.tris.shape[0])
        tri = torch.where(tri >= 0, tri, spread)
    if pix is not None:
        img = torch.div(pix, h * w, rounding_mode="floor")            # [P] view of each pixel
        rast_c = rows(rast.reshape(-1, 4), pix).reshape(n_pix, 1, 1, 4)
        db_c = rows(rast_db.reshape(-1, 4), pix).reshape(n_pix, 1, 1, 4)
        shape: tuple[int, ...] = (n_pix, 1, 1)
    else:
        img = None
        rast_c, db_c = rast, rast_db
        shape = (b, h, w)

    # validate=False: render_mesh validated the mesh (or its caller did) and rast
    # comes from its triangles
    gb_pos, _ = interpolate(mesh.v_pos, rast_c, prep.tris, backend=backend, validate=False)
    gb_geom = rows(prep.face_n, tri.reshape(-1)).reshape(*shape, 3)
    gb_nrm, _ = interpolate(prep.v_nrm, rast_c, prep.t_nrm, backend=backend, validate=False)
    gb_tng = None
    if prep.v_tng is not None:
        gb_tng, _ = interpolate(prep.v_tng, rast_c, prep.t_tng, backend=backend,
                                validate=False)
    if mesh.has_uv:
        assert mesh.v_tex is not None and mesh.t_tex_idx is not None
        uv, uv_da = interpolate(mesh.v_tex, rast_c, mesh.t_tex_idx, rast_db=db_c,
                                diff_attrs="all", backend=backend, validate=False)
        assert uv_da is not None
    else:
        uv = torch.zeros(*shape, 2, dtype=dtype, device=device)
        uv_da = torch.zeros(*shape, 4, dtype=dtype, device=device)
    tint = None
    if mesh.v_color is not None:
        tint, _ = interpolate(mesh.v_color, rast_c, prep.tris, backend=backend, validate=False)

    sampled = [sample_material(m, i, uv, uv_da, mips, prep.has_alpha, prep.needs_tangents,
                                prep.has_emissive, backend, tint)
               for i, m in enumerate(mesh.materials)]
    # each channel group kept apart (no [P,C] G-buffer concatenated and sliced
    # again: on a GPU each slice's backward is a zeroed [P,C] buffer of its own)
    parts = sampled[0]
    if prep.t_mat is not None:
        mat_id = prep.t_mat[tri].reshape(*shape, 1)
        for i in range(1, len(sampled)):
            parts = [torch.where(mat_id == i, mine, under)
                     for mine, under in zip(sampled[i], parts, strict=True)]
    kd = parts[0]
    alpha = parts[1] if prep.has_alpha else torch.ones_like(kd[..., 0:1])
    rest = iter(parts[2 if prep.has_alpha else 1:])
    ks = next(rest)
    nmap = next(rest) if prep.needs_tangents else None
    ke = next(rest) if prep.has_emissive else None

    power = views.light_power
    eye, light = views.campos.expand(b, 3), views.lightpos.expand(b, 3)
    if img is not None:
        if isinstance(power, torch.Tensor) and power.dim() == 1 and power.shape[0] == b:
            power = rows(power, img)
        eye, light = rows(eye, img), rows(light, img)
    color = shade(gb_pos, gb_geom, gb_nrm, gb_tng, kd, ks, nmap, eye, light, power,
                  min_roughness, light_falloff=light_falloff, compiled=compiled, gb_ke=ke,
                  backend=backend)
    color, alpha = color.reshape(n_pix, 3), alpha.reshape(n_pix, 1).to(color.dtype)
    if dest is None:  # every pixel shaded: the empty ones are zeroed
        hit = (tri_all >= 0)[:, None]
        color, alpha = torch.where(hit, color, 0.0), torch.where(hit, alpha, 0.0)
    return _Shaded(color, alpha, dest, covered)


@dataclass
class _Shaded:
    """One shaded layer: colour `[P,3]` and alpha `[P,1]` of P pixels, the rows of
    the flattened image they belong to (`dest`; the spare row n_all for a
    recorded render's unused slots) or None where P is every pixel; the
    covered count where the render has a pixel capacity."""

    color: torch.Tensor
    alpha: torch.Tensor
    dest: torch.Tensor | None
    covered: torch.Tensor | None


def _composite(under: torch.Tensor, layer: _Shaded, n_all: int) -> torch.Tensor:
    """`layer` over `under` (`[n_all+1,4]` flat RGBA with a spare last row, or
    `[n_all,4]`): lerp(under, (color, 1), alpha), as `[n_all+1,4]` where the
    layer's pixels are gathered, else `[n_all,4]`.

    Gathered layers are blended at their own pixels only and written into a
    copy of `under`: the other pixels are what a blend with alpha 0 gives,
    `under` itself. Measured on an H100 at spot.json's settings, blending the
    whole image (a zeroed image the layer was scattered into, a concatenated
    alpha, a full-size lerp and their backward passes) was most of the
    recorded step's 0.35 ms of concatenations and 0.27 ms of lerps; with the
    G-buffer kept apart (_render_layer) the concatenations take 0.10 ms.
    """
    top = torch.cat([layer.color, torch.ones_like(layer.alpha)], dim=-1)
    if layer.dest is None:
        return torch.lerp(under[:n_all], top, layer.alpha)
    if under.shape[0] == n_all:  # a spare row for the unused slots (dropped later)
        under = torch.cat([under, under.new_zeros(1, 4)])
    blended = torch.lerp(rows(under, layer.dest), top, layer.alpha)
    return put_rows(under, layer.dest, blended)


def render_mesh(mesh: Mesh, views: Views, resolution: tuple[int, int], *, spp: int = 1,
                layers: int = 1, background: torch.Tensor | None = None,
                min_roughness: float = 0.08, backend: str | None = None,
                mips: MipStacks | None = None,
                antialias: bool = True, light_falloff: bool = False,
                topology: Topology | None = None, validate: bool = True,
                compiled: bool = False, capturable: bool = False,
                pixel_capacity: int | None = None,
                corners: CornerGroups | None = None, per_view: bool = False) -> RenderOutput:
    """Render `mesh` from every view in `views`, differentiably.

    Args:
        mesh: the Mesh, already posed (positions in the space of views.campos).
        views: B views (mvp, eye, light, light power).
        resolution: (H, W) of the output.
        spp: supersampling factor; renders at (H*spp, W*spp) and box-filters.
        layers: depth-peeled layers composited front to back (1 = opaque).
        background: `[B,H,W,3]` or `[1,H,W,3]` linear image, or None for black.
        min_roughness: lower bound on roughness in the BSDF.
        backend: render backend ("auto", "cpu", "cuda", "torch" or None), used by
            rasterize, interpolate, texture and antialias ("torch": the plain-torch references).
        mips: caller-built mip stacks (render.materials) for material 0,
            {"kd"|"ks"|"normal"|"emissive": [level0, ...]}
            with level 0 the material's texture itself (trainer's custom_mip),
            or a list of such mappings (or None), one per material (the
            trainer's reference, whose stacks it builds once, not every render).
        antialias: run render.antialias on silhouettes (gradients to v_pos there).
        light_falloff: inverse-square light falloff (off: nvdiffmodeling's constant).
        topology: `Topology.from_tris(mesh.t_pos_idx)` built once by a caller that
            renders the same triangles many times (the trainer); built here if None.
        validate: run `mesh.validate()` first (index ranges, finiteness: a few
            GPU syncs). The ops inside skip their own index checks, so a caller
            passing False (the trainer, every step) must hand in a validated mesh
            or one posed from it; invalid indices would then shade as zeros.
        compiled: shading, and the normals and tangents computed per render,
            through torch.compile's fused kernels (shading.compiled; a GPU with
            Triton): the same values, far fewer launches.
        capturable: no host sync and no value-dependent shape anywhere (a render
            a CUDA graph can record): every layer is peeled, and the pixels are
            shaded all (the background too) or, with `pixel_capacity`, gathered
            into that many slots per layer.
        pixel_capacity: with `capturable`, the most covered pixels of one layer
            that are shaded (of B*H*W*spp²); covered pixels past it stay empty,
            which the output's `covered` count shows (the caller, who chose the
            capacity from the coverage it expects, then discards the render).
        corners: the tangent corner groups of `mesh` (corner_groups), built once
            by a caller that renders the same triangles many times.
        per_view: `mesh` holds one copy of a mesh per view, all with the same
            triangles (geometry.skinning.pose_views: an animated model posed at
            each view's time): view b draws copy b only. The same images as
            rendering each copy in its view alone, in one render.

    Returns:
        RenderOutput(color `[B,H,W,3]`, alpha `[B,H,W,1]`, rast of the first layer,
        covered count with `pixel_capacity`).
        Gradients flow to mesh.v_pos (through barycentrics, normals and
        antialiasing) and to every material texture (and the given mips).

    Raises:
        ValueError: wrong argument types, shapes or devices (naming the argument),
            or an invalid mesh (see Mesh.validate).
    """
    h, w = _check_args(mesh, views, resolution, spp, layers)
    if validate:
        mesh.validate()
    if mips is not None:
        check_mips(mips)
    if pixel_capacity is not None and (not capturable or not isinstance(pixel_capacity, int)
                                       or pixel_capacity < 1):
        raise ValueError(f"pixel_capacity must be an int >= 1 with capturable=True, got "
                         f"{pixel_capacity!r} (capturable={capturable})")
    b = len(views)
    fh, fw = h * spp, w * spp
    v_pos = mesh.v_pos
    n_all = b * fh * fw
    # the background, alpha 0, as flat RGBA rows with a spare last row (_composite)
    under = torch.zeros(n_all + 1, 4, dtype=v_pos.dtype, device=v_pos.device)
    under[:n_all].view(b, fh, fw, 4)[..., 0:3] = _background(background, b, h, w, spp, v_pos)
    accum = under[:n_all].view(b, fh, fw, 4)
    tris = mesh.t_pos_idx
    if per_view:
        if mesh.num_vertices % b or mesh.num_triangles % b:
            raise ValueError(f"per_view: the mesh's {mesh.num_vertices} vertices and "
                             f"{mesh.num_triangles} triangles are not {b} copies (one per view)")
        if mesh.num_triangles >= 1 << 24:  # the raster's float32 ids stay exact
            raise ValueError(f"per_view: {mesh.num_triangles} triangles in all; at most "
                             f"{(1 << 24) - 1} (render fewer views at once)")
        tris = tris[:mesh.num_triangles // b]
        clip = clip_positions(v_pos.view(b, -1, 3), views.mvp)
    else:
        clip = clip_positions(v_pos, views.mvp)
    counts: list[torch.Tensor] = []
    if mesh.num_triangles == 0:
        rast = torch.zeros(b, fh, fw, 4, dtype=v_pos.dtype, device=v_pos.device)
        if pixel_capacity is not None:
            counts.append(torch.zeros((), dtype=torch.int64, device=v_pos.device))
        return _finish(accum, rast, spp, counts)

    prep = _Prepared(mesh, check=validate, compiled=compiled, corners=corners)
    shaded: list[tuple[_Shaded, torch.Tensor]] = []
    with DepthPeeler(clip, tris, (fh, fw), grad_db=True, backend=backend,
                     capturable=capturable) as peeler:
        for _ in range(layers):
            rast, rast_db = peeler.rasterize_next_layer()
            if shaded and not capturable and not bool((rast[..., 3] > 0).any()):
                break
            assert rast_db is not None
            ids = _per_view_ids(rast, tris.shape[0]) if per_view else rast
            layer = _render_layer(prep, ids, rast_db, views, min_roughness, mips,
                                  light_falloff, backend, compiled, not capturable,
                                  pixel_capacity)
            shaded.append((layer, rast))
            if layer.covered is not None:
                counts.append(layer.covered)

    aa = None
    if antialias:
        from difflod.render.antialias import antialias as aa
        if topology is None:
            from difflod.render.topology import Topology
            topology = Topology.from_tris(tris)
    for layer, rast in reversed(shaded):
        under = _composite(under, layer, n_all)
        if aa is not None:
            under = aa(under[:n_all].view(b, fh, fw, 4), rast, clip, tris, topology=topology,
                       backend=backend, validate=False).reshape(n_all, 4)
    return _finish(under[:n_all].view(b, fh, fw, 4), shaded[0][1], spp, counts)


def corner_groups(mesh: Mesh) -> CornerGroups | None:
    """The tangent corner groups render_mesh uses for `mesh`'s triangles (its
    normal indices, or its position indices where normals are computed), or
    None where it computes no tangents (no normal map, or tangents given)."""
    from difflod.geometry.tangents import CornerGroups

    if not mesh.has_uv or not any(m.normal is not None for m in mesh.materials) \
            or (mesh.v_tng is not None and mesh.t_tng_idx is not None):
        return None
    assert mesh.t_tex_idx is not None
    has_nrm = mesh.v_nrm is not None and mesh.t_nrm_idx is not None
    t_nrm = mesh.t_nrm_idx if has_nrm else mesh.t_pos_idx
    assert t_nrm is not None
    return CornerGroups.of(mesh.t_pos_idx, mesh.t_tex_idx, t_nrm)


def _finish(accum: torch.Tensor, rast: torch.Tensor, spp: int,
            counts: list[torch.Tensor]) -> RenderOutput:
    if spp > 1:
        accum = torch.nn.functional.avg_pool2d(accum.permute(0, 3, 1, 2), spp) \
            .permute(0, 2, 3, 1).contiguous()
    covered = torch.stack(counts).amax() if counts else None
    return RenderOutput(color=accum[..., 0:3], alpha=accum[..., 3:4], rast=rast,
                        covered=covered)
