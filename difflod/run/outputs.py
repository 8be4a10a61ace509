"""Files a training run writes into out/<name>/.

- config.json — the resolved configuration;
- img_%06d.png — progress images every save_interval (candidate | reference,
  from the config's camera_eye / camera_up, on its background);
- mesh/mesh.obj + mesh.mtl + texture_kd/ks/n.png — nvdiffmodeling's layout;
- mesh.glb — the same model as one glTF binary;
- history.json — loss and PSNR estimate per iteration;
- metrics.json and report/ — held-out evaluation (difflod.evaluate).
Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from difflod.config import TrainConfig
from difflod.evaluate.evaluate import write_metrics as _write_json  # strict JSON, atomic
from difflod.mesh import Mesh

if TYPE_CHECKING:
    from difflod.optimize.trainer import Trainer

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


@torch.no_grad()
def save_progress_image(trainer: Trainer, iteration: int) -> Path:
    """Render candidate | reference from the display camera into img_NNNNNN.png."""
    from difflod.io.image import linear_to_srgb, write_image
    from difflod.render.pipeline import render_mesh
    from difflod.scene.views import background, views_from_eye

    cfg = trainer.config
    res = cfg.resolved_display_res
    view = views_from_eye(cfg.camera_eye, cfg.camera_up, light_power=cfg.light_power,
                          device=trainer.device)
    bg = background(cfg.background, 1, res, res, trainer.generator, device=trainer.device)
    backend = cfg.backend if cfg.backend != "auto" else None
    ref_layers = cfg.layers if trainer.reference.materials[0].has_alpha else 1
    opt = render_mesh(trainer._candidate(), view, (res, res), layers=cfg.layers, background=bg,
                      min_roughness=cfg.min_roughness, backend=backend,
                      mips=trainer.trainable.mips(), topology=trainer.topology["candidate"]).color
    ref = render_mesh(trainer.reference, view, (res, res), layers=ref_layers, background=bg,
                      spp=cfg.spp, min_roughness=cfg.min_roughness, backend=backend,
                      topology=trainer.topology["reference"]).color
    img = torch.cat([opt, ref], dim=2)[0]
    # raster row 0 is the bottom row: flip for the picture
    img = linear_to_srgb(img.clamp(0.0, 1.0)).flip(0).cpu()
    path = trainer.out_dir / f"img_{iteration:06d}.png"
    write_image(path, img)
    return path


def evaluate_run(out_dir: Path, config: TrainConfig, reference: Mesh,
                 candidates: dict[str, Mesh], *, history: list[dict] | None = None,
                 seconds: float | None = None, files: dict[str, Path] | None = None,
                 quiet: bool = False) -> dict:
    """Held-out evaluation of a run's results: metrics.json and report/.

    `files` maps candidate names to their written files (for file sizes);
    the run's own mesh.glb is added as "difflod".
    """
    from difflod.evaluate.report import evaluate_into

    return evaluate_into(
        out_dir, reference, candidates, views=config.eval_views, res=config.eval_res,
        seed=config.seed, backend=config.backend if config.backend != "auto" else None,
        files={"difflod": out_dir / "mesh.glb", **(files or {})},
        extra={} if seconds is None else {"train_seconds": seconds}, history=history,
        config=config.to_dict(), quiet=quiet)
