"""LDR-FLIP in torch: the error maps of a batch of views, on any device.

FLIP (Andersson et al., "FLIP: A Difference Evaluator for Alternating
Images", HPG 2020; the separable filters of "Visualizing and Communicating
Errors in Rendered Images", Ray Tracing Gems II, 2021) compares a reference
and a test picture as a viewer flipping between them would see it:

1. colour pipeline: sRGB → linear RGB → XYZ → YCxCz (opponent space, D65
   white); each channel blurred by the contrast sensitivity of the eye at
   `ppd` pixels per degree (Gaussians in the frequency domain; the
   blue-yellow channel's is a sum of two, filtered as two separable passes
   added); back to linear RGB, clamped to [0,1]; CIE L*a*b* with the Hunt
   adjustment (a, b scaled by 0.01 L); HyAB distance (|ΔL| + ‖Δab‖) raised
   to qc = 0.7, and remapped to [0,1]: [0, pc·cmax) onto [0, pt), the rest
   onto [pt, 1], cmax being the distance of pure green from pure blue
   (pc = 0.4, pt = 0.95);
2. feature pipeline: the achromatic channel (Y + 16) / 116 filtered with the
   first and second derivatives of a Gaussian of standard deviation
   0.5 · 0.082 · ppd pixels (edges and points), each derivative's positive and
   negative weights normalized to sum to +1 and -1; the feature difference is
   (max(|Δ‖edge‖|, |Δ‖point‖|) / √2) ^ 0.5;
3. the error of a pixel is colour_difference ^ (1 - feature_difference).

Every filter pass replicates the border pixels (the library clamps its
indices the same way). The result matches flip-evaluator's LDR mode
(tests/evaluate/test_flip_torch.py holds it to the library on renders of
difflod's assets, noisy and shifted pictures: per-pixel maps and means).

Written by hand because flip-evaluator (the reference implementation's
Python package) runs only on the CPU, one picture per call. Measured on this
project's 2-core CPU (bench/eval.py --parts, 32 pictures of 512², float32):
the library 0.19 s per picture (0.39 CPU-s: OpenMP on both cores), holding
the GIL throughout (a Python thread beside it is starved), so a thread pool
over the views gains nothing (0.219 vs 0.228 s per picture with two threads);
this module 0.063 s per picture (0.125 CPU-s; torch's two threads, one
picture at a time, which measured fastest: 0.087 s against 0.13 s in
batches of 4 or 8). Being 3x faster on the CPU as well, it is what the
evaluation uses on every device (evaluate/metrics.py `flip_per_image`).
On a GPU its time is bench/eval.py --device cuda --parts's "flip" row (this
machine has no GPU to measure it on).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_PPD", "flip_error_maps"]

#: FLIP's default: a 0.7 m wide 3840-pixel monitor seen from 0.7 m
DEFAULT_PPD = 0.7 * (3840 / 0.7) * math.pi / 180

_QC, _PC, _PT, _W, _QF = 0.7, 0.4, 0.95, 0.082, 0.5
# CSF Gaussians (a, b) of the Y and Cx channels, and Cz's two
_Y_AB, _CX_AB, _CZ1_AB, _CZ2_AB = (1.0, 0.0047), (1.0, 0.0053), (34.1, 0.04), (13.5, 0.025)
_MAX_B = 0.04
# linear sRGB (D65) <-> CIE XYZ, and the D65 white point
_RGB2XYZ = ((10135552 / 24577794, 8788810 / 24577794, 4435075 / 24577794),
            (2613072 / 12288897, 8788810 / 12288897, 887015 / 12288897),
            (1425312 / 73733382, 8788810 / 73733382, 70074185 / 73733382))
_XYZ2RGB = ((3.241003275, -1.537398934, -0.498615861),
            (-0.969224334, 1.875930071, 0.041554224),
            (0.055639423, -0.204011202, 1.057148933))
_WHITE = (0.950428545, 1.0, 1.088900371)


def _mat(x: torch.Tensor, m: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """`[N,3,H,W]` colours times a 3x3 matrix (per pixel). A matrix product: on
    a GPU in full float32 at torch's default matmul precision ("highest"; 8x
    faster on the CPU than three weighted sums)."""
    w = torch.tensor(m, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,njhw->nihw", w, x)


def _white(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    w = torch.tensor(_WHITE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x / w if inverse else x * w


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _xyz_to_ycxcz(xyz: torch.Tensor) -> torch.Tensor:
    x, y, z = _white(xyz, inverse=True).unbind(1)
    return torch.stack([116 * y - 16, 500 * (x - y), 200 * (y - z)], 1)


def _ycxcz_to_xyz(c: torch.Tensor) -> torch.Tensor:
    yy, cx, cz = c.unbind(1)
    y = (yy + 16) / 116
    return _white(torch.stack([y + cx / 500, y, y - cz / 200], 1), inverse=False)


def _xyz_to_lab(xyz: torch.Tensor) -> torch.Tensor:
    d = 6 / 29
    t = _white(xyz, inverse=True)
    f = torch.where(t > d ** 3, t.clamp_min(0).pow(1 / 3), t / (3 * d * d) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def _hunt(lab: torch.Tensor) -> torch.Tensor:
    lum = lab[:, :1]
    return torch.cat([lum, 0.01 * lum * lab[:, 1:]], 1)


def _hyab(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = a - b
    return d[:, 0].abs() + torch.sqrt(d[:, 1] ** 2 + d[:, 2] ** 2)


def _cmax() -> float:
    """HyAB^qc of pure green from pure blue, through the same colour pipeline."""
    rgb = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64).view(2, 3, 1, 1)
    lab = _hunt(_xyz_to_lab(_mat(rgb, _RGB2XYZ)))
    return float(_hyab(lab[:1], lab[1:]) ** _QC)


def _csf(x2: torch.Tensor, a: float, b: float, root: bool) -> torch.Tensor:
    """FLIP's spatial Gaussian a·sqrt(π/b)·exp(-π² x² / b); its amplitude's
    square root for the two halves of a separated sum of Gaussians."""
    amp = a * math.sqrt(math.pi / b)
    return (math.sqrt(amp) if root else amp) * torch.exp(-(math.pi ** 2) * x2 / b)


def _spatial_taps(ppd: float) -> torch.Tensor:
    """`[4,K]` float64 1-D taps: Y, Cx (each summing to 1) and Cz's two
    Gaussians (scaled together so that their separable sum sums to 1)."""
    radius = math.ceil(3 * math.sqrt(_MAX_B / (2 * math.pi ** 2)) * ppd)
    x = (torch.arange(2 * radius + 1, dtype=torch.float64) - radius) / ppd
    x2 = x * x
    y, cx = _csf(x2, *_Y_AB, root=False), _csf(x2, *_CX_AB, root=False)
    z1, z2 = _csf(x2, *_CZ1_AB, root=True), _csf(x2, *_CZ2_AB, root=True)
    norm = math.hypot(float(z1.sum()), float(z2.sum()))
    return torch.stack([y / y.sum(), cx / cx.sum(), z1 / norm, z2 / norm])


def _feature_taps(ppd: float) -> torch.Tensor:
    """`[3,K]` float64 taps: the Gaussian (sums to 1), its first and second
    derivatives (positive weights sum to 1, negative ones to -1)."""
    sd = 0.5 * _W * ppd
    radius = math.ceil(3 * sd)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x * x) / (2 * sd * sd))
    dg = -x * g
    ddg = (x * x / (sd * sd) - 1) * g

    def signed(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t > 0, t / t.clamp_min(0).sum(), t / -t.clamp_max(0).sum())

    return torch.stack([g / g.sum(), signed(dg), signed(ddg)])


def _pass(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """Depthwise 1-D correlation of `[N,C,H,W]` channel c with taps[c] along W
    (dim=3) or H (dim=2), borders replicated.

    On a GPU the convolution runs in float64 (rounded back to float32): cuDNN
    would run a float32 one in TF32 (10-bit mantissas, on by default).
    """
    c, k = taps.shape
    r = k // 2
    dtype = torch.float64 if x.device.type == "cuda" else x.dtype
    w = taps.to(x.device, dtype)
    w = w.view(c, 1, 1, k) if dim == 3 else w.view(c, 1, k, 1)
    pad = (r, r, 0, 0) if dim == 3 else (0, 0, r, r)
    return F.conv2d(F.pad(x.to(dtype), pad, mode="replicate"), w, groups=c).to(x.dtype)


def _color_difference(ref: torch.Tensor, test: torch.Tensor, ppd: float) -> torch.Tensor:
    """`[N,H,W]` remapped colour difference of YCxCz pictures `[N,3,H,W]`."""
    taps = _spatial_taps(ppd)
    cmax = _cmax()
    labs = []
    for img in (ref, test):
        x = torch.cat([img, img[:, 2:]], 1)  # Y, Cx, Cz, Cz: Cz is filtered twice
        x = _pass(_pass(x, taps, 3), taps, 2)
        ycxcz = torch.cat([x[:, :2], x[:, 2:3] + x[:, 3:]], 1)
        rgb = _mat(_ycxcz_to_xyz(ycxcz), _XYZ2RGB).clamp(0, 1)
        labs.append(_hunt(_xyz_to_lab(_mat(rgb, _RGB2XYZ))))
    d = _hyab(*labs) ** _QC
    pccmax = _PC * cmax
    return torch.where(d < pccmax, d * (_PT / pccmax),
                       _PT + (d - pccmax) / (cmax - pccmax) * (1 - _PT))


def _features(ycxcz: torch.Tensor, taps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(‖edge‖, ‖point‖) `[N,H,W]` of the achromatic channel."""
    y = (ycxcz[:, :1] + 16) / 116
    gx = _pass(y.expand(-1, 3, -1, -1), taps, 3)  # rows: Gaussian, 1st, 2nd derivative
    # columns: dx = g_y * dg_x, ddx = g_y * ddg_x, dy = dg_y * g_x, ddy = ddg_y * g_x
    cols = _pass(torch.stack([gx[:, 1], gx[:, 2], gx[:, 0], gx[:, 0]], 1),
                 taps[[0, 0, 1, 2]], 2)
    dx, ddx, dy, ddy = cols.unbind(1)
    return torch.sqrt(dx * dx + dy * dy), torch.sqrt(ddx * ddx + ddy * ddy)


def _flip_chunk(ref: torch.Tensor, test: torch.Tensor, ppd: float) -> torch.Tensor:
    ycc = [_xyz_to_ycxcz(_mat(_srgb_to_linear(t.permute(0, 3, 1, 2).clamp(0, 1)), _RGB2XYZ))
           for t in (ref, test)]
    color = _color_difference(ycc[0], ycc[1], ppd)
    taps = _feature_taps(ppd)
    (edge_r, point_r), (edge_t, point_t) = _features(ycc[0], taps), _features(ycc[1], taps)
    feature = (torch.maximum((edge_r - edge_t).abs(), (point_r - point_t).abs())
               / math.sqrt(2)) ** _QF
    return color ** (1 - feature)


@torch.no_grad()
def flip_error_maps(reference: torch.Tensor, test: torch.Tensor, *, ppd: float = DEFAULT_PPD,
                    chunk: int = 8) -> torch.Tensor:
    """LDR-FLIP error maps of pairs of sRGB pictures.

    Args:
        reference, test: `[B,H,W,3]` (or `[H,W,3]`) float sRGB-encoded
            pictures in [0,1] (clamped), same shape and device.
        ppd: pixels per degree of visual angle.
        chunk: pictures filtered at once (memory: about 40 floats per pixel).
    Returns:
        `[B,H,W]` (or `[H,W]`) float32 error in [0,1] on the inputs' device;
        0 where the pictures are identical.
    """
    if not isinstance(reference, torch.Tensor) or not isinstance(test, torch.Tensor):
        raise ValueError("flip_error_maps: reference and test must be tensors")  # noqa: TRY004
    if reference.shape != test.shape or reference.shape[-1:] != (3,) \
            or reference.dim() not in (3, 4):
        raise ValueError(f"flip_error_maps: reference and test must both be [B,H,W,3] or "
                         f"[H,W,3], got {tuple(reference.shape)} and {tuple(test.shape)}")
    if reference.device != test.device:
        raise ValueError(f"flip_error_maps: reference and test must be on the same device, got "
                         f"{reference.device} and {test.device}")
    if not ppd > 0:
        raise ValueError(f"flip_error_maps: ppd must be > 0, got {ppd}")
    single = reference.dim() == 3
    ref, tst = (reference[None], test[None]) if single else (reference, test)
    maps = [_flip_chunk(ref[i:i + chunk].float(), tst[i:i + chunk].float(), ppd)
            for i in range(0, len(ref), max(1, chunk))]
    out = torch.cat(maps) if maps else ref.new_zeros((0, *ref.shape[1:3]))
    return out[0] if single else out
