"""`difflod demo`: the main job on an embedded default, with no files needed.

It optimizes a low-poly UV sphere (a few hundred triangles) to look like a
procedural "spiky" model (tens of thousands of triangles with PBR textures
and a detailed normal map), writes out/demo with the final model, progress
images, metrics and report, and prints the held-out PSNR of the initial guess
and of the result.
"""

from __future__ import annotations

from pathlib import Path

from difflod.config import load_config
from difflod.optimize.trainer import TrainResult, train

__all__ = ["DEMO_SETTINGS", "run_demo"]

# Sized to finish in a few minutes on a 2-core laptop CPU.
DEMO_SETTINGS: dict = {
    "ref_mesh": "asset:spiky?triangles=30000&texture_res=512",
    "base_mesh": "asset:sphere?triangles=400",
    "out_dir": "demo",
    "random_textures": True,
    "iter": 500,
    "batch": 2,
    "train_res": 128,
    "display_res": 256,
    "texture_res": [256, 256],
    "learning_rate": [0.01, 0.03],
    "save_interval": 100,
    "camera_eye": [2.5, 0.0, 2.5],
    "eval_views": 16,
    "eval_res": 256,
}


def run_demo(out_root: str | Path = "out", iterations: int | None = None,
             backend: str | None = None, device: str | None = None,
             quiet: bool = False) -> TrainResult:
    overrides = dict(DEMO_SETTINGS)
    if iterations is not None:
        overrides["iter"] = iterations
    if backend is not None:
        overrides["backend"] = backend
    if device is not None:
        overrides["device"] = device
    config = load_config(None, overrides)
    result = train(config, out_root=out_root, quiet=quiet)
    if result.metrics is not None:
        cands = result.metrics.get("candidates", {})
        before = cands.get("initial", {}).get("psnr", {}).get("mean")
        after = cands.get("difflod", {}).get("psnr", {}).get("mean")
        if before is not None and after is not None:
            print(f"held-out PSNR: initial guess {before:.2f} dB -> difflod {after:.2f} dB "
                  f"({after - before:+.2f} dB)")
    print(f"results in {result.out_dir}")
    return result
