"""CPU (numba) kernels of the fused shading op, and the per-pixel shading both
backends run: shading/shade.py's `shade_core` written out for one pixel,
forward and backward (`shade_pixel`). The CPU runs it in one parallel loop
each way; cuda_shade.py compiles the same Python function as a CUDA device
function, so it sits here, beside the loops that call it: numba's on-disk
cache watches only the caller's file, and a callee in another module could
leave a stale compiled copy.

Why hand-written: `shade_core` in plain torch (the reference) runs 161 kernels
forward and 342 backward over `[N,1]` and `[N,3]` tensors, each a full pass
over the pixels and a temporary, and it was a third of a CPU training step
(27.7 ms of shading at 60k pixels, against 92 ms for the step). `shade_pixel`
computes one pixel's colour; with flag 8 it also recomputes the forward's
intermediates from the inputs (nothing is saved between the passes) and
writes the gradients of the eight G-buffer inputs by the chain rule, written
out below step by step in the reference's order of operations.

Arithmetic is float64 per pixel (fastmath off), stored in the tensors' dtype;
clamps pass gradients where the reference's torch.clamp does (inside the
range, ends included), `where`s where their condition holds. Inputs are flat
rows: `[N,3]` (tangent `[N,4]`; absent inputs a `[1,3]` stand-in and a flag),
view and light positions and the light power per row of their own `[R,3]` /
`[R]` arrays, pixel n reading row n // per_row. shade_pixel is one function
for both passes, not inlined, and the pass a flag: numba compiles it once
(about 6 s on a 2-core machine, then cached on disk; inlined into both loops
it took 16 s to compile and ran forward + backward at 60k pixels in 7.8 ms
instead of 10.9).
tests/render/test_shade_fused.py holds both backends to `shade_core` (values,
float64 gradcheck, gradients against autograd's).
"""

from __future__ import annotations

import math

import numba
from numba import prange

from difflod.render.backends.cpu_threads import prefer_openmp

prefer_openmp()

__all__ = ["backward", "forward", "shade_pixel"]

# the reference's constants, copied rather than imported: numba bakes globals into
# its on-disk cache, which a change in another module would not invalidate
# (tests/render/test_shade_fused.py checks that they agree)
EPS_NORM = 1e-20  # shading.bsdf.safe_normalize's clamp of |x|^2
EPS_COS = 1e-4  # shading.bsdf.SPECULAR_EPS
EPS_DIST = 1e-8  # scene.light.light_scale's clamp of the squared distance
DIELECTRIC_F0 = 0.04
NORMAL_THRESHOLD = 0.1
_INV_PI = 1.0 / math.pi

_jit = numba.njit(cache=True, fastmath=False, inline="always")


@_jit
def _dot(a0, a1, a2, b0, b1, b2):  # pragma: no cover - numba
    return a0 * b0 + a1 * b1 + a2 * b2


@_jit
def _norm(x0, x1, x2):  # pragma: no cover - numba
    """safe_normalize: (unit vector, 1 / its length, whether the clamp was inactive)."""
    l2 = x0 * x0 + x1 * x1 + x2 * x2
    free = l2 >= EPS_NORM
    inv = 1.0 / math.sqrt(l2 if free else EPS_NORM)
    return x0 * inv, x1 * inv, x2 * inv, inv, free


@_jit
def _norm_grad(y0, y1, y2, inv, free, g0, g1, g2):  # pragma: no cover - numba
    """Gradient of x from the gradient g of y = safe_normalize(x)."""
    if free:
        d = y0 * g0 + y1 * g1 + y2 * g2
        return (g0 - y0 * d) * inv, (g1 - y1 * d) * inv, (g2 - y2 * d) * inv
    return g0 * inv, g1 * inv, g2 * inv


@_jit
def _clamp_cos(c):  # pragma: no cover - numba
    """(clamped cosine, whether a gradient passes)."""
    if c < EPS_COS:
        return EPS_COS, False
    if c > 1.0:
        return 1.0, False
    return c, True


@_jit
def _lambda(a2, cos):  # pragma: no cover - numba
    """Smith's Lambda and its derivatives by a2 and by cos."""
    c, ok = _clamp_cos(cos)
    c2 = c * c
    tan2 = (1.0 - c2) / c2
    r = math.sqrt(1.0 + a2 * tan2)
    lam = 0.5 * (r - 1.0)
    d_a2 = 0.25 * tan2 / r
    d_cos = (0.25 * a2 / r) * (-2.0 / (c2 * c)) if ok else 0.0
    return lam, d_a2, d_cos


@_jit
def _channel(kdk, f0d, metal, f90, weight, dscale, sc):  # pragma: no cover - numba
    """One colour channel of the BSDF: (reflected value, its Fresnel F, its f0)."""
    f0k = f0d + metal * (kdk - f0d)
    fk = f0k + (f90 - f0k) * weight
    return kdk * dscale + fk * sc, fk, f0k


@_jit
def _channel_grad(gc, kdk, f0d, metal, f90, weight, dscale, sc, fk, f0k):  # pragma: no cover
    """Adjoint of _channel under gc: (kd's gradient, and those of dscale, sc, f90,
    weight, f0d, metal)."""
    g_fk = gc * sc
    g_f0k = g_fk * (1.0 - weight)
    return (gc * dscale + g_f0k * metal, gc * kdk, gc * fk, g_fk * weight, g_fk * (f90 - f0k),
            g_f0k * (1.0 - metal), g_f0k * (kdk - f0d))


@numba.njit(cache=True, fastmath=False)
def shade_pixel(n, pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l,
                per_p, flags, min_roughness, normal_scale, grad, gp, gg, gs, gt, gkd, garm,
                gnm):  # pragma: no cover - numba
    """Colour of pixel n (3 values); with flag 8, also the gradients of its
    inputs under grad[n], written to row n of gp, gg, gs, gt, gkd, garm, gnm."""
    want_grad = (flags & 8) != 0
    has_nmap = (flags & 1) != 0
    has_ke = (flags & 2) != 0
    falloff = (flags & 4) != 0
    px, py, pz = pos[n, 0], pos[n, 1], pos[n, 2]
    # 1. smooth normal, normal map (t = the tangent made orthogonal, c = n0 x t)
    n0x, n0y, n0z, inv_s, free_s = _norm(smooth[n, 0], smooth[n, 1], smooth[n, 2])
    n1x, n1y, n1z = n0x, n0y, n0z
    d_nt = inv_t = inv_m = hand = cx = cy = cz = xs = ys = zc = ux = uy = uz = 0.0
    free_t = free_m = False
    if has_nmap:
        d_nt = _dot(n0x, n0y, n0z, tangent[n, 0], tangent[n, 1], tangent[n, 2])
        ux, uy, uz, inv_t, free_t = _norm(tangent[n, 0] - n0x * d_nt,
                                          tangent[n, 1] - n0y * d_nt,
                                          tangent[n, 2] - n0z * d_nt)
        hand = -1.0 if tangent[n, 3] < 0 else 1.0
        cx = n0y * uz - n0z * uy
        cy = n0z * ux - n0x * uz
        cz = n0x * uy - n0y * ux
        xs = nmap[n, 0] * normal_scale
        ys = nmap[n, 1] * normal_scale
        zc = max(nmap[n, 2], 0.0)
        n1x, n1y, n1z, inv_m, free_m = _norm(ux * xs + hand * cx * ys + n0x * zc,
                                             uy * xs + hand * cy * ys + n0y * zc,
                                             uz * xs + hand * cz * ys + n0z * zc)
    # 2. two-sided flip and bend towards the geometric normal
    rv = n // per_v
    rl = n // per_l
    gx, gy, gz, inv_g, free_g = _norm(geom[n, 0], geom[n, 1], geom[n, 2])
    vx, vy, vz, inv_v, free_v = _norm(vp[rv, 0] - px, vp[rv, 1] - py, vp[rv, 2] - pz)
    sgn = 1.0 if _dot(gx, gy, gz, vx, vy, vz) > 0 else -1.0
    q = sgn * _dot(vx, vy, vz, n1x, n1y, n1z) / NORMAL_THRESHOLD
    w = min(max(q, 0.0), 1.0)
    Nx, Ny, Nz, inv_n, free_n = _norm((gx + w * (n1x - gx)) * sgn, (gy + w * (n1y - gy)) * sgn,
                                      (gz + w * (n1z - gz)) * sgn)
    # 3. BSDF (its wo is v)
    lx, ly, lz = lp[rl, 0] - px, lp[rl, 1] - py, lp[rl, 2] - pz
    ix, iy, iz, inv_i, free_i = _norm(lx, ly, lz)
    hx, hy, hz, inv_h, free_h = _norm(vx + ix, vy + iy, vz + iz)
    c_oh, ok_oh = _clamp_cos(_dot(vx, vy, vz, hx, hy, hz))
    mm2 = (1.0 - c_oh) * (1.0 - c_oh)
    weight = mm2 * mm2 * (1.0 - c_oh)
    wi_n = _dot(ix, iy, iz, Nx, Ny, Nz)
    wo_n = _dot(vx, vy, vz, Nx, Ny, Nz)
    n_h = _dot(Nx, Ny, Nz, hx, hy, hz)
    rough, metal = arm[n, 1], arm[n, 2]
    strength = 1.0 - arm[n, 0]
    f0d = DIELECTRIC_F0 * strength
    f90 = strength + (1.0 - strength) * metal
    through = 1.0 - (f0d + (strength - f0d) * weight)
    lam = max(wi_n, 0.0) * _INV_PI
    dscale = (1.0 - metal) * through * lam
    lo = min_roughness * min_roughness
    a = min(max(rough * rough, lo), 1.0)
    a2 = a * a
    c_nh, ok_nh = _clamp_cos(n_h)
    dd = (a2 - 1.0) * c_nh * c_nh + 1.0
    D = a2 / (dd * dd * math.pi)
    lam_o, lo_a2, lo_cos = _lambda(a2, wo_n)
    lam_i, li_a2, li_cos = _lambda(a2, wi_n)
    G = 1.0 / (1.0 + lam_o + lam_i)
    cw = max(wo_n, EPS_COS)
    scale = D * G * 0.25 / cw
    front = wo_n > EPS_COS and wi_n > EPS_COS
    sc = scale if front else 0.0
    power = pw[n // per_p]
    l2 = lx * lx + ly * ly + lz * lz
    dist2 = max(l2, EPS_DIST)
    L = power / dist2 if falloff else power
    r0, f0, f00 = _channel(kd[n, 0], f0d, metal, f90, weight, dscale, sc)
    r1, f1, f01 = _channel(kd[n, 1], f0d, metal, f90, weight, dscale, sc)
    r2, f2, f02 = _channel(kd[n, 2], f0d, metal, f90, weight, dscale, sc)
    c0, c1, c2 = r0 * L, r1 * L, r2 * L
    if has_ke:
        c0 += ke[n, 0]
        c1 += ke[n, 1]
        c2 += ke[n, 2]
    if not want_grad:
        return c0, c1, c2

    # ---- backward: the adjoints in reverse order
    go0, go1, go2 = grad[n, 0], grad[n, 1], grad[n, 2]
    g_L = go0 * r0 + go1 * r1 + go2 * r2
    k0 = _channel_grad(go0 * L, kd[n, 0], f0d, metal, f90, weight, dscale, sc, f0, f00)
    k1 = _channel_grad(go1 * L, kd[n, 1], f0d, metal, f90, weight, dscale, sc, f1, f01)
    k2 = _channel_grad(go2 * L, kd[n, 2], f0d, metal, f90, weight, dscale, sc, f2, f02)
    gkd[n, 0], gkd[n, 1], gkd[n, 2] = k0[0], k1[0], k2[0]
    g_dscale = k0[1] + k1[1] + k2[1]
    g_sc = k0[2] + k1[2] + k2[2]
    g_f90 = k0[3] + k1[3] + k2[3]
    g_weight = k0[4] + k1[4] + k2[4]
    g_f0d = k0[5] + k1[5] + k2[5]
    g_metal = k0[6] + k1[6] + k2[6]
    # the light's inverse-square falloff
    glx = gly = glz = 0.0
    if falloff and l2 >= EPS_DIST:
        g_d2 = -g_L * power / (dist2 * dist2)
        glx, gly, glz = 2.0 * lx * g_d2, 2.0 * ly * g_d2, 2.0 * lz * g_d2
    # specular scale = D G / (4 cw), kept where front
    g_scale = g_sc if front else 0.0
    g_D = g_scale * G * 0.25 / cw
    g_G = g_scale * D * 0.25 / cw
    g_wo_n = -g_scale * scale / cw if wo_n >= EPS_COS else 0.0
    g_lam = -g_G * G * G
    g_a2 = g_lam * (lo_a2 + li_a2)
    g_wo_n += g_lam * lo_cos
    g_wi_n = g_lam * li_cos
    # D = a2 / (pi dd^2), dd = (a2 - 1) c^2 + 1
    g_dd = -2.0 * g_D * D / dd
    g_a2 += g_D / (dd * dd * math.pi) + g_dd * c_nh * c_nh
    g_n_h = g_dd * (a2 - 1.0) * 2.0 * c_nh if ok_nh else 0.0
    g_alpha = 2.0 * a * g_a2 if lo <= rough * rough <= 1.0 else 0.0
    # diffuse: dscale = (1 - metal) through lam; through and f0d, f90 from strength
    g_metal -= g_dscale * through * lam
    g_through = g_dscale * (1.0 - metal) * lam
    if wi_n >= 0.0:
        g_wi_n += g_dscale * (1.0 - metal) * through * _INV_PI
    g_f0d -= g_through * (1.0 - weight)
    g_weight -= g_through * (strength - f0d)
    g_strength = -g_through * weight + g_f90 * (1.0 - metal) + DIELECTRIC_F0 * g_f0d
    g_metal += g_f90 * (1.0 - strength)
    garm[n, 0], garm[n, 1], garm[n, 2] = -g_strength, 2.0 * rough * g_alpha, g_metal
    # weight = (1 - clamp(v.h))^5
    g_c_oh = -5.0 * mm2 * mm2 * g_weight if ok_oh else 0.0
    # the cosines: v.h, i.N, v.N, N.h
    gvx, gvy, gvz = g_c_oh * hx + g_wo_n * Nx, g_c_oh * hy + g_wo_n * Ny, g_c_oh * hz + g_wo_n * Nz
    ghx, ghy, ghz = g_c_oh * vx + g_n_h * Nx, g_c_oh * vy + g_n_h * Ny, g_c_oh * vz + g_n_h * Nz
    gNx = g_wi_n * ix + g_wo_n * vx + g_n_h * hx
    gNy = g_wi_n * iy + g_wo_n * vy + g_n_h * hy
    gNz = g_wi_n * iz + g_wo_n * vz + g_n_h * hz
    e0, e1, e2 = _norm_grad(hx, hy, hz, inv_h, free_h, ghx, ghy, ghz)  # h = |v + i|
    gvx, gvy, gvz = gvx + e0, gvy + e1, gvz + e2
    e0, e1, e2 = _norm_grad(ix, iy, iz, inv_i, free_i, g_wi_n * Nx + e0, g_wi_n * Ny + e1,
                            g_wi_n * Nz + e2)
    glx, gly, glz = glx + e0, gly + e1, glz + e2
    # N = normalize((g + w (n1 - g)) sgn), w = clamp(sgn v.n1 / threshold, 0, 1)
    gux, guy, guz = _norm_grad(Nx, Ny, Nz, inv_n, free_n, gNx, gNy, gNz)
    gux, guy, guz = gux * sgn, guy * sgn, guz * sgn
    gn1x, gn1y, gn1z = gux * w, guy * w, guz * w
    f = _dot(gux, guy, guz, n1x - gx, n1y - gy, n1z - gz) * sgn / NORMAL_THRESHOLD \
        if 0.0 <= q <= 1.0 else 0.0
    gvx, gvy, gvz = gvx + f * n1x, gvy + f * n1y, gvz + f * n1z
    gn1x, gn1y, gn1z = gn1x + f * vx, gn1y + f * vy, gn1z + f * vz
    e0, e1, e2 = _norm_grad(vx, vy, vz, inv_v, free_v, gvx, gvy, gvz)
    gp[n, 0], gp[n, 1], gp[n, 2] = -e0 - glx, -e1 - gly, -e2 - glz
    gg[n, 0], gg[n, 1], gg[n, 2] = _norm_grad(gx, gy, gz, inv_g, free_g, gux * (1.0 - w),
                                              guy * (1.0 - w), guz * (1.0 - w))
    gn0x, gn0y, gn0z = gn1x, gn1y, gn1z
    if has_nmap:
        # m = u xs + hand c ys + n0 zc, c = n0 x u, u = normalize(t - n0 (n0.t))
        gmx, gmy, gmz = _norm_grad(n1x, n1y, n1z, inv_m, free_m, gn1x, gn1y, gn1z)
        gnm[n, 0] = _dot(gmx, gmy, gmz, ux, uy, uz) * normal_scale
        gnm[n, 1] = _dot(gmx, gmy, gmz, cx, cy, cz) * hand * normal_scale
        gnm[n, 2] = _dot(gmx, gmy, gmz, n0x, n0y, n0z) if nmap[n, 2] >= 0.0 else 0.0
        gcx, gcy, gcz = hand * ys * gmx, hand * ys * gmy, hand * ys * gmz
        gn0x = gmx * zc + (uy * gcz - uz * gcy)  # + u x gc
        gn0y = gmy * zc + (uz * gcx - ux * gcz)
        gn0z = gmz * zc + (ux * gcy - uy * gcx)
        g1x, g1y, g1z = _norm_grad(ux, uy, uz, inv_t, free_t,
                                   gmx * xs + (gcy * n0z - gcz * n0y),  # + gc x n0
                                   gmy * xs + (gcz * n0x - gcx * n0z),
                                   gmz * xs + (gcx * n0y - gcy * n0x))
        g_dnt = -_dot(g1x, g1y, g1z, n0x, n0y, n0z)
        gn0x += g_dnt * tangent[n, 0] - g1x * d_nt
        gn0y += g_dnt * tangent[n, 1] - g1y * d_nt
        gn0z += g_dnt * tangent[n, 2] - g1z * d_nt
        gt[n, 0], gt[n, 1], gt[n, 2] = g1x + g_dnt * n0x, g1y + g_dnt * n0y, g1z + g_dnt * n0z
        gt[n, 3] = 0.0
    gs[n, 0], gs[n, 1], gs[n, 2] = _norm_grad(n0x, n0y, n0z, inv_s, free_s, gn0x, gn0y, gn0z)
    return c0, c1, c2


@numba.njit(parallel=True, cache=True, fastmath=False)
def _forward(pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l, per_p,
             flags, min_roughness, normal_scale, out):  # pragma: no cover - numba
    for n in prange(pos.shape[0]):
        out[n, 0], out[n, 1], out[n, 2] = shade_pixel(
            numba.int64(n), pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v,
            per_l, per_p, flags & 7, min_roughness, normal_scale, out, out, out, out, out, out,
            out, out)


@numba.njit(parallel=True, cache=True, fastmath=False)
def _backward(pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw, per_v, per_l, per_p,
              flags, min_roughness, normal_scale, grad, g_pos, g_geom, g_smooth, g_tangent,
              g_kd, g_arm, g_nmap):  # pragma: no cover - numba
    for n in prange(pos.shape[0]):
        # int64 as in _forward: one compiled shade_pixel for both loops (a prange
        # index can be typed uint64, which compiled a second copy)
        shade_pixel(numba.int64(n), pos, geom, smooth, tangent, kd, arm, nmap, ke, vp, lp, pw,
                    per_v, per_l, per_p, flags | 8, min_roughness, normal_scale, grad, g_pos,
                    g_geom, g_smooth, g_tangent, g_kd, g_arm, g_nmap)


# ----------------------------------------------------------------------------- launchers

def _np(t):
    return t.detach().numpy()


def forward(inputs: tuple, rows: tuple, flags: int, min_roughness: float,
            normal_scale: float, out):
    """Fill out `[N,3]` with the colours. inputs: (pos, geom, smooth, tangent, kd, arm,
    nmap, ke, view_pos, light_pos, power) as flat contiguous CPU tensors of one
    dtype (stand-ins where absent, see flags); rows: (per_v, per_l, per_p)."""
    _forward(*(_np(t) for t in inputs), *rows, flags, min_roughness, normal_scale, _np(out))


def backward(inputs: tuple, rows: tuple, flags: int, min_roughness: float,
             normal_scale: float, grad, grads: tuple) -> None:
    """Write the gradients of (pos, geom, smooth, tangent, kd, arm, nmap) under grad
    `[N,3]` into `grads` (seven `[N,C]` tensors, fully overwritten; tangent and
    nmap's only where flags say they are used)."""
    _backward(*(_np(t) for t in inputs), *rows, flags, min_roughness, normal_scale, _np(grad),
              *(_np(g) for g in grads))
