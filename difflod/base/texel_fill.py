"""Texels no surface point (or no view) determines, filled from their neighbours.

A UV atlas has texels outside every chart (gutters, the space between
islands). No surface point maps there, yet bilinear filtering at a chart's
border and every coarser mip level read them; three.js, Blender and game
engines build their own mip maps from the file. So they must hold the colour
of the chart beside them, never noise, black or an unrelated mean.

- `fill_from_nearest`: every texel outside a `valid` mask takes the value of
  its nearest valid texel (Euclidean distance in texels), as bakers' "extend"
  margins do. The nearest texel comes from scipy.ndimage's exact Euclidean
  feature transform (`distance_transform_edt(..., return_indices=True)`),
  one pass over the atlas whatever the gutter's width;
- `fill_unseen`: the export rule for a trained texture, given the texture
  training started from: texels outside the charts are filled from the charts;
  inside them, a texel that training never changed (no view saw it, so Adam
  never moved it) keeps its start when the start was a bake, and is filled
  from the nearest texel training did change when the start was noise.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = ["fill_from_nearest", "fill_unseen"]


def fill_from_nearest(img: np.ndarray | torch.Tensor,
                      valid: np.ndarray) -> np.ndarray | torch.Tensor:
    """Copy into every texel outside `valid` the value of its nearest valid texel.

    Args:
        img: `[H,W,C]` numpy array or torch tensor (any float dtype, any device).
        valid: `[H,W]` bool, at least one True.
    Returns:
        A new array of img's kind, dtype and device; valid texels unchanged.
    Raises:
        ValueError: shapes differ, or no texel is valid.
    """
    valid = np.asarray(valid, dtype=bool)
    if tuple(img.shape[:2]) != valid.shape or img.ndim != 3:
        raise ValueError(f"img {tuple(img.shape)} must be [H,W,C] with valid's "
                         f"[H,W] = {valid.shape}")
    if not valid.any():
        raise ValueError("fill_from_nearest: no valid texel to fill from")
    _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
    if isinstance(img, torch.Tensor):
        r = torch.from_numpy(rows).to(img.device)
        c = torch.from_numpy(cols).to(img.device)
        return img[r, c].clone()
    return img[rows, cols].copy()


def fill_unseen(tex: torch.Tensor, start: torch.Tensor, chart: np.ndarray | None, *,
                keep_start: bool) -> torch.Tensor:
    """A trained texture `[H,W,C]` with the texels training did not determine filled.

    Args:
        tex: the trained texture; start: the texture training started from
            (same shape).
        chart: base.bake.chart_mask of the atlas, or None when unknown (then only the
            texels training left unchanged can be filled, and only when not
            `keep_start`).
        keep_start: the start is meaningful (a bake, the reference's maps):
            unchanged texels inside the charts keep it. False for noise.
    Returns:
        A new tensor on tex's device; tex itself when nothing is filled.
    """
    if tex.shape != start.shape:
        raise ValueError(f"tex {tuple(tex.shape)} and start {tuple(start.shape)} differ")
    if keep_start:
        if chart is None:
            return tex
        valid = chart
    else:
        seen = (tex != start.to(tex.device)).any(dim=-1).cpu().numpy()
        valid = seen if chart is None else seen & chart
    if valid.all() or not valid.any():
        return tex
    return fill_from_nearest(tex.detach(), valid)
