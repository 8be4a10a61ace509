"""`difflod simplify` of foliage: a card cloud to train, QEM + bake to compare with.

A shrub of cut-out leaves (MASK) decimated by QEM keeps a few scattered
leaves; `base_method: auto` trains crossed cards instead (base/cards.py),
supersampled (`spp: null` is 2 for a MASK reference) and depth-peeled
(`layers: null` is 4), and shows the cards' start as the "initial" candidate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from difflod.config import load_config
from difflod.errors import ConfigError
from difflod.io import load
from difflod.run.simplify import simplify, simplify_config

REF = "asset:shrub?triangles=3000&texture_res=128"
SETTINGS = {"iter": 40, "train_res": 64, "batch": 2, "texture_res": [128, 128],
            "eval_views": 4, "eval_res": 64, "log_interval": 10}


def test_foliage_trains_cards_and_beats_qem_bake(tmp_path: Path) -> None:
    cfg = simplify_config().replace(**{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in SETTINGS.items()})
    result = simplify(REF, 80, tmp_path / "o", config=cfg, quiet=True)
    mat = result.mesh.materials[0]
    assert mat.alpha_mode == "MASK" and mat.double_sided
    assert result.mesh.num_triangles <= 80
    # the file to compare with is still QEM + bake; the start is the cards
    qem = load(tmp_path / "o" / "qem_bake.glb")
    assert qem.num_triangles != result.mesh.num_triangles or \
        qem.num_vertices != result.mesh.num_vertices
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    psnr = {k: v["psnr"]["mean"] for k, v in metrics["candidates"].items()}
    iou = {k: v["iou"]["mean"] for k, v in metrics["candidates"].items()}
    assert set(psnr) == {"qem_bake", "initial", "difflod"}
    assert psnr["difflod"] > psnr["qem_bake"] + 1.0, psnr
    assert iou["difflod"] > iou["qem_bake"] + 0.2, iou


def test_base_method_is_validated() -> None:
    assert load_config(None, {}).base_method == "auto"
    assert load_config(None, {"base_method": "qem"}).base_method == "qem"
    with pytest.raises(ConfigError, match="'base_method' must be one of"):
        load_config(None, {"base_method": "billboards"})


def test_cards_need_an_atlas_that_holds_them(tmp_path: Path) -> None:
    """Below 24^2 texels the atlas cannot hold two legible cards: `cards` asked
    for is one clear error, `auto` does not take cards (each budget then picks
    QEM or an even remesh: base_mesh)."""
    from difflod.models import open_model
    from difflod.run.simplify import base_method

    ref = open_model("asset:shrub?triangles=2000")
    small = simplify_config().replace(texture_res=(16, 16))
    assert base_method(ref, small) == "auto"
    assert base_method(ref, small.replace(texture_res=(24, 24))) == "cards"
    with pytest.raises(ConfigError, match=r"'base_method' cards needs 'texture_res' >= 24"):
        simplify(ref, 40, tmp_path / "o", config=small.replace(base_method="cards"), quiet=True)
    assert not (tmp_path / "o").exists()  # refused before anything was written
