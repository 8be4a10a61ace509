"""Benchmark of the render primitives: ms per call, forward and forward+backward.

Pipeline per call: rasterize (with rast_db) + interpolate (uv, with
derivatives) + texture (linear-mipmap-linear, 1024^2 RGB, mip stack built
inside each call; the texture op uses the same backend) + antialias, on a
UV sphere of the requested triangle count seen by `batch` cameras. The
"rast ms" column times rasterize alone (visibility + barycentrics and their
derivatives, forward) for the whole batch. If the
interpolate/texture/antialias ops are not importable, rasterize alone is
timed (the "pipeline" column says which). The "fwd+bwd unchecked" column
times the same pipeline with interpolate(validate=False) and
antialias(validate=False), as difflod's renderer calls them (its meshes are
validated on load): on CUDA that skips their two host syncs per call.
Warm-up runs are excluded.

    python bench/render.py [--backend cpu,torch,cuda] [--res 512] [--batch 8]
                           [--triangles 20000,200000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable

import torch

from difflod.render.rasterize import rasterize
from difflod.scene.camera import look_at, perspective


def uv_sphere(
    triangles: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A UV sphere with about `triangles` triangles: pos `[V,3]`, uv `[V,2]`, tris `[F,3]` int32."""
    rings = max(3, round(math.sqrt(triangles / 4)))
    segs = max(3, round(triangles / (2 * rings)))
    th = torch.linspace(0, math.pi, rings + 1, dtype=torch.float64)
    ph = torch.linspace(0, 2 * math.pi, segs + 1, dtype=torch.float64)
    t, p = torch.meshgrid(th, ph, indexing="ij")
    pos = torch.stack([t.sin() * p.cos(), t.cos(), t.sin() * p.sin()], dim=-1).reshape(-1, 3)
    uv = torch.stack([p / (2 * math.pi), t / math.pi], dim=-1).reshape(-1, 2)
    idx = torch.arange((rings + 1) * (segs + 1)).reshape(rings + 1, segs + 1)
    a, b = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    c, d = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    tris = torch.cat([torch.stack([a, c, b], 1), torch.stack([b, c, d], 1)])
    return pos.float().to(device), uv.float().to(device), tris.int().to(device)


def views(batch: int, device: torch.device) -> torch.Tensor:
    """`[B,4,4]` float32 model-view-projection matrices around the sphere."""
    proj = perspective(math.radians(45), 1.0, 0.1, 10.0)
    mats = []
    for i in range(batch):
        a = 2 * math.pi * i / batch
        mats.append(
            proj @ look_at([2.8 * math.cos(a), 0.6, 2.8 * math.sin(a)], [0, 0, 0], [0, 1, 0])
        )
    return torch.stack(mats).to(device)


def make_step(backend: str, n_tris: int, res: int, batch: int, device: torch.device):
    """(forward(requires_grad) -> loss tensor, pipeline name)."""
    pos, uv, tris = uv_sphere(n_tris, device)
    mvp = views(batch, device)
    tex = torch.rand(1024, 1024, 3, device=device)
    try:
        from difflod.render.ops import antialias, interpolate, texture
        from difflod.render.topology import Topology

        topo = Topology.from_tris(tris)
        full = True
    except ImportError:
        full = False

    def forward(grad: bool, validate: bool = True) -> torch.Tensor:
        p = pos.clone().requires_grad_(grad)
        t = tex.clone().requires_grad_(grad)
        clip = torch.cat([p, torch.ones_like(p[:, :1])], dim=1) @ mvp.transpose(1, 2)
        rast, rast_db = rasterize(clip, tris, (res, res), grad_db=full, backend=backend)
        if not full:
            return rast[..., :3].sum()
        tc, tc_da = interpolate(uv, rast, tris, rast_db=rast_db, diff_attrs="all",
                                backend=backend, validate=validate)
        color = texture(t, tc, tc_da, filter_mode="linear-mipmap-linear", backend=backend)
        color = antialias(color, rast, clip, tris, topology=topo, backend=backend,
                          validate=validate)
        return color.sum()

    def raster_only() -> None:
        with torch.no_grad():
            clip = torch.cat([pos, torch.ones_like(pos[:, :1])], dim=1) @ mvp.transpose(1, 2)
            rasterize(clip, tris, (res, res), grad_db=full, backend=backend)

    forward.raster_only = raster_only  # type: ignore[attr-defined]
    return forward, ("rast+interp+tex+aa" if full else "rasterize only"), int(tris.shape[0])


def _time(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    fn()  # warm-up (compiles numba, fills caches)
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--backend", default=None, help="comma list of cpu,torch,cuda (default: available)"
    )
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--triangles", default="20000,200000")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    if args.backend:
        backends = args.backend.split(",")
    else:
        backends = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for backend in backends:
        device = torch.device("cuda" if backend == "cuda" else "cpu")
        for n in (int(s) for s in args.triangles.split(",")):
            if (
                backend == "torch"
                and n * args.res * args.res * args.batch > 2e10
                and not args.backend
            ):
                continue  # the oracle is far too slow at this size
            fwd, pipeline, n_real = make_step(backend, n, args.res, args.batch, device)

            def run_fwd(fwd: Callable[[bool], torch.Tensor] = fwd) -> None:
                with torch.no_grad():
                    fwd(False)

            def run_bwd(fwd: Callable[..., torch.Tensor] = fwd) -> None:
                fwd(True).backward()

            def run_bwd_unchecked(fwd: Callable[..., torch.Tensor] = fwd) -> None:
                fwd(True, validate=False).backward()

            rows.append(
                {
                    "backend": backend,
                    "device": str(device),
                    "triangles": n_real,
                    "res": args.res,
                    "batch": args.batch,
                    "pipeline": pipeline,
                    "rasterize_ms": round(_time(fwd.raster_only, args.repeats, device), 2),
                    "forward_ms": round(_time(run_fwd, args.repeats, device), 2),
                    "forward_backward_ms": round(_time(run_bwd, args.repeats, device), 2),
                    "forward_backward_unchecked_ms": round(
                        _time(run_bwd_unchecked, args.repeats, device), 2),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(
        f"{'backend':8} {'triangles':>9} {'res':>5} {'batch':>5} {'rast ms':>8} {'fwd ms':>9} "
        f"{'fwd+bwd ms':>11} {'fwd+bwd/view':>12} {'unchecked':>10}  pipeline"
    )
    for r in rows:
        print(
            f"{r['backend']:8} {r['triangles']:>9} {r['res']:>5} {r['batch']:>5} "
            f"{r['rasterize_ms']:>8.2f} {r['forward_ms']:>9.2f} {r['forward_backward_ms']:>11.2f} "
            f"{r['forward_backward_ms'] / r['batch']:>12.2f} "
            f"{r['forward_backward_unchecked_ms']:>10.2f}  {r['pipeline']}"
        )


if __name__ == "__main__":
    main()
