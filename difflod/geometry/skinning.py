"""Linear blend skinning, and reading nvdiffmodeling's skinning files.

`skin_positions` blends the 4x4 skinning matrices of each vertex's (up to)
four joints by their weights and applies the blend (column vectors,
p' = (sum_k w_k M_{j_k}) @ [p,1]). Weights are used as given (glTF requires
them to sum to 1).

`skin_mesh` poses a Mesh at time t: positions as above; normals and tangents
by the 3x3 part of the same blended matrix, renormalised (exact for rigid or
uniformly scaled bones, which is what skinned assets use; nvdiffmodeling uses
the per-bone inverse-transpose, identical in that case). A normal/tangent
belongs to the vertex of the first corner that references it (lowest
triangle index).

nvdiffmodeling's files (read by its obj loader next to `model.obj`):
`model.bones.npy` float `[frames, J, 4, 4]` bone matrices for *row* vectors
(it computes `[p,1] @ M`), and `model.weights.npy` float `[V, J]` dense
weights. `load_nvdiffmodeling_skin` transposes the matrices to difflod's
column-vector convention, keeps each vertex's four largest |weights|
(nvdiffmodeling uses abs() too) and renormalises them to sum 1. Frame k gets
time k / fps seconds (fps=1: time = frame index, as nvdiffmodeling's
integer `time` parameter); difflod clamps t outside the range where
nvdiffmodeling loops (t % frames).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from difflod.errors import InputFileError
from difflod.geometry.normals import check_positions, safe_normalize
from difflod.mesh import Mesh, Skin

__all__ = ["blend_matrices", "load_nvdiffmodeling_skin", "pose_views", "skin_mesh",
           "skin_positions"]


def blend_matrices(v_joints: torch.Tensor, v_weights: torch.Tensor,
                   matrices: torch.Tensor, check_range: bool = True) -> torch.Tensor:
    """Per-vertex blended skinning matrix `[V,4,4]` = sum_k w[v,k] * matrices[joints[v,k]].

    Args:
        v_joints: `[V,4]` int64 joint indices in [0, J).
        v_weights: `[V,4]` float weights.
        matrices: `[J,4,4]` float skinning matrices.
        check_range: read the joint indices' range (two host syncs on a GPU);
            False for joints that Mesh.validate already checked.
    """
    if not isinstance(matrices, torch.Tensor) or matrices.dim() != 3 \
            or matrices.shape[1:] != (4, 4) or not matrices.is_floating_point():
        raise ValueError(f"matrices must be a [J,4,4] float tensor, got "
                         f"{tuple(getattr(matrices, 'shape', ()))}")
    _check_joints(v_joints, v_weights, matrices.shape[0], check_range)
    m = matrices[v_joints.long()]                              # [V,4,4,4]
    return (m * v_weights.to(m.dtype)[:, :, None, None]).sum(dim=1)


def _check_joints(v_joints: torch.Tensor, v_weights: torch.Tensor, num_joints: int,
                  check_range: bool) -> None:
    """Shapes of the joints and weights; with `check_range`, the joints' range
    (two host syncs on a GPU)."""
    if not isinstance(v_joints, torch.Tensor) or v_joints.dim() != 2 or v_joints.shape[1] != 4 \
            or v_joints.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"v_joints must be a [V,4] int64 tensor, got "
                         f"{tuple(getattr(v_joints, 'shape', ()))}")
    check_positions("v_weights", v_weights, 4)
    if v_weights.shape[0] != v_joints.shape[0]:
        raise ValueError(f"v_weights must be [{v_joints.shape[0]},4] like v_joints, "
                         f"got {tuple(v_weights.shape)}")
    if check_range and v_joints.numel() and (int(v_joints.min()) < 0
                                             or int(v_joints.max()) >= num_joints):
        raise ValueError(f"v_joints holds indices outside [0,{num_joints})")


def skin_positions(v_pos: torch.Tensor, v_joints: torch.Tensor, v_weights: torch.Tensor,
                   matrices: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning of positions.

    Args:
        v_pos: `[V,3]` float bind-pose positions.
        v_joints: `[V,4]` int64, v_weights: `[V,4]` float, matrices: `[J,4,4]` float.
    Returns:
        `[V,3]` posed positions; differentiable in v_pos, v_weights and matrices.
    """
    check_positions("v_pos", v_pos)
    if v_joints.shape[0] != v_pos.shape[0]:
        raise ValueError(f"v_joints must be [{v_pos.shape[0]},4] like v_pos, "
                         f"got {tuple(v_joints.shape)}")
    b = blend_matrices(v_joints, v_weights, matrices).to(v_pos.dtype)
    return (b[:, :3, :3] @ v_pos[:, :, None]).squeeze(-1) + b[:, :3, 3]


def _attr_owner(t_attr_idx: torch.Tensor, t_pos_idx: torch.Tensor, count: int) -> torch.Tensor:
    """For each of `count` attribute entries, the position index of its first corner (0 if unused)."""
    attr = t_attr_idx.reshape(-1).long()
    pos = t_pos_idx.reshape(-1).long()
    order = torch.arange(attr.numel(), device=attr.device)
    first = torch.full((count,), attr.numel(), dtype=torch.int64, device=attr.device)
    first = first.scatter_reduce(0, attr, order, reduce="amin")
    if attr.numel() == 0:
        return first.new_zeros(count)
    # no boolean indexing: no host sync when a GPU mesh is posed every step
    return torch.where(first < attr.numel(), pos[first.clamp(max=attr.numel() - 1)], 0)


def skin_mesh(mesh: Mesh, t: float, validated: bool = False) -> Mesh:
    """The mesh posed at time `t` (seconds) with `mesh.skin.at(t)`.

    Returns the mesh unchanged when it has no skin. The result carries no
    joints/weights/skin (it is a posed, static mesh). `validated`: the caller
    ran `mesh.validate()`, so the joint indices' range is not read again (no
    host sync on a GPU).
    """
    if mesh.skin is None or mesh.v_joints is None or mesh.v_weights is None:
        return mesh
    return _posed_copies(mesh, mesh.skin.at(float(t))[None], validated)


def pose_views(mesh: Mesh, times: torch.Tensor, validated: bool = False) -> Mesh:
    """One posed copy of `mesh` per time, as one mesh: copy b is `mesh` posed at
    `times[b]` (`[B]` seconds, a tensor on the mesh's device), its vertices and
    normals at `b * V` and `b * N`, its triangles at `b * F` (the same UVs,
    materials and vertex colors). render_mesh(per_view=True) renders copy b
    in view b, so a batch of views at their own poses is one render. No host
    sync with `validated` (a recorded training step poses with it); a mesh
    without a skin gives B unposed copies.
    """
    b = int(times.shape[0])
    if mesh.skin is None or mesh.v_joints is None or mesh.v_weights is None:
        eye = torch.eye(4, dtype=mesh.v_pos.dtype, device=mesh.device)
        joints = torch.zeros(mesh.num_vertices, 4, dtype=torch.int64, device=mesh.device)
        weights = torch.zeros(mesh.num_vertices, 4, dtype=mesh.v_pos.dtype, device=mesh.device)
        weights[:, 0] = 1.0
        mesh = mesh.replace(v_joints=joints, v_weights=weights)
        return _posed_copies(mesh, eye.expand(b, 1, 4, 4), validated=True)
    return _posed_copies(mesh, mesh.skin.at_times(times), validated)


def _posed_copies(mesh: Mesh, matrices: torch.Tensor, validated: bool) -> Mesh:
    """`mesh` posed by each of the B joint-matrix sets `matrices` `[B,J,4,4]`,
    the B copies as one mesh (pose_views; B = 1: the posed mesh itself)."""
    assert mesh.v_joints is not None and mesh.v_weights is not None
    b = matrices.shape[0]
    mats = matrices.to(mesh.v_pos)
    _check_joints(mesh.v_joints, mesh.v_weights, mats.shape[1], not validated)
    # [B,V,4,4]: each vertex's four joints' matrices, blended by its weights
    blend = torch.einsum("vk,bvkij->bvij", mesh.v_weights.to(mats.dtype),
                         mats[:, mesh.v_joints.long()])
    v_pos = (blend[..., :3, :3] @ mesh.v_pos[None, :, :, None]).squeeze(-1) + blend[..., :3, 3]
    changes: dict[str, object] = {"v_pos": v_pos.reshape(-1, 3), "v_joints": None,
                                  "v_weights": None, "skin": None}
    if mesh.v_nrm is not None and mesh.t_nrm_idx is not None:
        own = _attr_owner(mesh.t_nrm_idx, mesh.t_pos_idx, mesh.v_nrm.shape[0])
        lin = blend[:, own, :3, :3].to(mesh.v_nrm.dtype)
        changes["v_nrm"] = safe_normalize((lin @ mesh.v_nrm[None, :, :, None]).squeeze(-1)
                                          ).reshape(-1, 3)
    if mesh.v_tng is not None and mesh.t_tng_idx is not None:
        own = _attr_owner(mesh.t_tng_idx, mesh.t_pos_idx, mesh.v_tng.shape[0])
        lin = blend[:, own, :3, :3].to(mesh.v_tng.dtype)
        xyz = safe_normalize((lin @ mesh.v_tng[None, :, :3, None]).squeeze(-1))
        changes["v_tng"] = torch.cat([xyz, mesh.v_tng[None, :, 3:].expand(b, -1, -1)],
                                     dim=-1).reshape(-1, 4)
    if b > 1:
        changes.update(_copied_indices(mesh, b))
    return mesh.replace(**changes)


def _copied_indices(mesh: Mesh, b: int) -> dict[str, torch.Tensor | None]:
    """The index buffers (and per-vertex colors) of `b` copies of `mesh`, copy k's
    positions, normals and tangents offset by k times their count; UVs shared."""
    copy = torch.arange(b, device=mesh.device)[:, None, None]

    def offset(idx: torch.Tensor | None, count: int) -> torch.Tensor | None:
        return None if idx is None else (idx[None] + copy * count).reshape(-1, 3)

    return {
        "t_pos_idx": offset(mesh.t_pos_idx, mesh.num_vertices),
        "t_nrm_idx": offset(mesh.t_nrm_idx, 0 if mesh.v_nrm is None else mesh.v_nrm.shape[0]),
        "t_tng_idx": offset(mesh.t_tng_idx, 0 if mesh.v_tng is None else mesh.v_tng.shape[0]),
        "t_tex_idx": None if mesh.t_tex_idx is None else mesh.t_tex_idx.repeat(b, 1),
        "t_mat": None if mesh.t_mat is None else mesh.t_mat.repeat(b),
        "v_color": None if mesh.v_color is None else mesh.v_color.repeat(b, 1),
    }


def _load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise InputFileError(path, f"expected a numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise InputFileError(path, "array holds NaN or Inf")
    return arr


def load_nvdiffmodeling_skin(mesh: Mesh, bones_path: str | os.PathLike[str],
                             weights_path: str | os.PathLike[str], fps: float = 1.0) -> Mesh:
    """Attach nvdiffmodeling's `.bones.npy` / `.weights.npy` skinning to `mesh`.

    Args:
        mesh: the bind-pose mesh the files belong to (V vertices).
        bones_path: `[frames,J,4,4]` row-vector bone matrices.
        weights_path: `[V,J]` dense weights.
        fps: frames per second for the keyframe times (frame k at k / fps).
    Returns:
        The mesh with v_joints `[V,4]` int64, v_weights `[V,4]` float32, skin.
    Raises:
        InputFileError: naming the file, on unreadable files or shape mismatch.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    bones = _load_npy(bones_path)
    if bones.ndim != 4 or bones.shape[2:] != (4, 4) or bones.shape[0] < 1 or bones.shape[1] < 1:
        raise InputFileError(bones_path, f"expected bone matrices [frames,joints,4,4], "
                             f"got shape {bones.shape}")
    weights = _load_npy(weights_path)
    n_joints = bones.shape[1]
    if weights.ndim != 2 or weights.shape != (mesh.num_vertices, n_joints):
        raise InputFileError(weights_path, f"expected weights [{mesh.num_vertices},{n_joints}] "
                             f"(vertices x joints of {os.path.basename(str(bones_path))}), "
                             f"got shape {weights.shape}")
    w = torch.from_numpy(np.abs(weights.astype(np.float32)))
    if n_joints < 4:
        w = torch.cat([w, torch.zeros(w.shape[0], 4 - n_joints)], dim=1)
    top_w, top_j = torch.topk(w, 4, dim=1)
    top_j = torch.where(top_j < n_joints, top_j, torch.zeros_like(top_j))
    total = top_w.sum(dim=1, keepdim=True)
    if w.shape[0] and float(total.min()) <= 0:
        bad = int(torch.nonzero(total[:, 0] <= 0)[0])
        raise InputFileError(weights_path, f"row {bad}: vertex has all-zero weights")
    mats = torch.from_numpy(bones.astype(np.float32)).transpose(-1, -2).contiguous()
    skin = Skin(times=torch.arange(bones.shape[0], dtype=torch.float32) / float(fps),
                matrices=mats, joint_names=tuple(f"bone{j}" for j in range(n_joints)))
    dev = mesh.device
    return mesh.replace(v_joints=top_j.to(dev), v_weights=(top_w / total).to(dev),
                        skin=_skin_to(skin, dev))


def _skin_to(skin: Skin, device: torch.device) -> Skin:
    """The skin with its tensors on `device`."""
    return Skin(times=skin.times.to(device), matrices=skin.matrices.to(device),
                joint_names=skin.joint_names)
