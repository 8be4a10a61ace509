"""Give an unskinned base mesh the skin of its reference.

A base mesh made in another tool often lacks joints and weights; to train on
an animated reference each base vertex takes the joints and weights of the
nearest reference vertex (in the bind pose), a common first guess that
artists then refine. Nearest neighbours via scipy's cKDTree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from scipy.spatial import cKDTree

from difflod.mesh import Mesh

__all__ = ["transfer_skin"]


def transfer_skin(reference: Mesh, base: Mesh) -> Mesh:
    """`base` with v_joints / v_weights / skin copied from the nearest reference vertex.

    Raises:
        ValueError: the reference has no skin.
    """
    if reference.skin is None or reference.v_joints is None or reference.v_weights is None:
        raise ValueError("reference has no skin to transfer")
    tree = cKDTree(reference.v_pos.detach().cpu().double().numpy())
    _, nearest = tree.query(base.v_pos.detach().cpu().double().numpy(), k=1)
    idx = torch.from_numpy(np.asarray(nearest, dtype=np.int64)).to(reference.v_joints.device)
    return dataclasses.replace(
        base, v_joints=reference.v_joints[idx].to(base.device),
        v_weights=reference.v_weights[idx].to(base.device), skin=reference.skin)
