"""`difflod simplify` on a glowing model: the emission survives into mesh.glb and
mesh/ (OBJ + MTL), where the reference's panels glow.

One short CLI run (beacon asset, 3k -> 300 triangles, 10 iterations at 64 px);
the files are read back and rendered with the light off, so the pictures hold
the emission alone, and compared with the reference's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from difflod.cli import main
from difflod.io import load
from difflod.models import open_model
from difflod.render.pipeline import render_mesh
from difflod.scene.views import fixed_views

REF = "asset:beacon?triangles=3000&texture_res=64"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("simplify_emissive")
    cfg = root / "cfg.json"
    cfg.write_text(json.dumps({"eval_views": 2, "eval_res": 32, "save_interval": 0}))
    folder = root / "out"
    rc = main(["simplify", REF, "--triangles", "300", "-o", str(folder), "--config", str(cfg),
               "--iter", "10", "--train-res", "64", "--batch", "2", "--texture-res", "64",
               "--backend", "cpu", "--device", "cpu", "--quiet"])
    assert rc == 0
    return folder


def _emission(mesh: object, views: object) -> tuple[torch.Tensor, torch.Tensor]:
    """(color, coverage) with the light off: the emitted radiance alone."""
    dark = dataclasses.replace(views, light_power=0.0)
    with torch.no_grad():
        r = render_mesh(mesh, dark, (64, 64), backend="cpu")
    return r.color, r.alpha[..., 0]


@pytest.mark.parametrize("file", ["mesh.glb", "mesh/mesh.obj", "qem_bake.glb"])
def test_the_result_glows_where_the_reference_does(out: Path, file: str) -> None:
    ref = open_model(REF)
    got = load(out / file)
    assert got.num_triangles <= 300
    assert got.materials[0].emissive is not None, file
    views = fixed_views(6, 0)
    want, want_a = _emission(ref, views)
    have, have_a = _emission(got, views)
    inside = (want_a > 0.999) & (have_a > 0.999)
    panels = inside & (want.sum(-1) > 1.0)                  # the reference glows (> 1)
    dark = inside & (want.sum(-1) == 0.0)                   # the reference emits nothing
    assert int(panels.sum()) > 100 and int(dark.sum()) > 1000
    # measured (this seed, a 2-core CPU): 2.11 on the panels and 0.064 elsewhere for
    # mesh.glb and mesh/ (qem_bake: 2.10, 0.055), the reference 2.41 and 0; the
    # bounds leave about 3x room, as 300 triangles and 64^2 texels blur the strips
    # (1-2 texels wide) by amounts that move with the UV atlas
    glow_on, glow_off = float(have[panels].sum(-1).mean()), float(have[dark].sum(-1).mean())
    assert glow_on > 1.5 and glow_off < 0.2, (file, glow_on, glow_off)


def test_mtl_names_the_emissive_map(out: Path) -> None:
    text = (out / "mesh" / "mesh.mtl").read_text()
    assert "map_Ke -mm 0 " in text  # the peak exceeds 1: stored as a gain
    assert (out / "mesh" / "texture_ke.png").is_file()
