"""Files a training run writes into out/<name>/.

- config.json — the resolved configuration;
- img_%06d.png — progress images every save_interval (candidate | reference,
  from the config's camera_eye / camera_up, on its background), rendered by
  Trainer.render_display;
- mesh/mesh.obj + mesh.mtl + texture_kd/ks/n.png — nvdiffmodeling's layout;
- mesh.glb — the same model as one glTF binary;
- history.json — loss and PSNR estimate per iteration;
- metrics.json and report/ — held-out evaluation (difflod.evaluate).
Every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from difflod.config import TrainConfig
from difflod.evaluate.evaluate import write_metrics as _write_json  # strict JSON, atomic
from difflod.mesh import Mesh

__all__ = [
    "evaluate_run",
    "save_progress_image",
    "write_config",
    "write_history",
    "write_mesh",
]


def write_config(out_dir: Path, config: TrainConfig) -> None:
    _write_json(out_dir / "config.json", config.to_dict())


def write_history(out_dir: Path, history: list[dict]) -> None:
    _write_json(out_dir / "history.json", history)


def write_mesh(out_dir: Path, mesh: Mesh) -> None:
    from difflod.io import save

    (out_dir / "mesh").mkdir(parents=True, exist_ok=True)
    save(mesh, out_dir / "mesh" / "mesh.obj")
    save(mesh, out_dir / "mesh.glb")


def save_progress_image(out_dir: Path, iteration: int, image: torch.Tensor) -> Path:
    """Write a progress picture (Trainer.render_display: `[H,W,3]` sRGB, row 0 at
    the top) as out_dir/img_NNNNNN.png."""
    from difflod.io.image import write_image

    path = out_dir / f"img_{iteration:06d}.png"
    write_image(path, image)
    return path


def evaluate_run(out_dir: Path, config: TrainConfig, reference: Mesh,
                 candidates: dict[str, Mesh], *, history: list[dict] | None = None,
                 seconds: float | None = None, files: dict[str, Path] | None = None,
                 quiet: bool = False, timings: dict[str, float] | None = None,
                 on_stage: Callable[[str], None] | None = None,
                 device: torch.device | None = None, start: str | None = None) -> dict:
    """Held-out evaluation of a run's results: metrics.json and report/.

    `files` maps candidate names to their written files (for file sizes);
    the run's own mesh.glb is added as "difflod". `timings` (stage -> wall
    seconds of the stages before) go into metrics.json's "timings", with the
    evaluate and report stages' own; `on_stage` is called as those begin.
    The meshes are rendered and scored on `device` (the run's; None: the
    reference's), whatever device they come on. `start`: how simplify made the
    mesh it trained ("qem", "remesh" or "cards"), metrics.json's "start".
    """
    from difflod.evaluate.report import evaluate_into

    return evaluate_into(
        out_dir, reference, candidates, views=config.eval_views, res=config.eval_res,
        seed=config.seed, backend=config.render_backend,
        files={"difflod": out_dir / "mesh.glb", **(files or {})},
        extra={**({} if seconds is None else {"train_seconds": seconds}),
               **({} if timings is None else {"timings": dict(timings)}),
               **({} if start is None else {"start": start})},
        history=history, config=config.to_dict(), quiet=quiet, on_stage=on_stage,
        device=device)
