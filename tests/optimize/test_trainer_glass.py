"""Training on glass: with `layers` left null, a reference with a BLEND material is
rendered (and the candidate trained) through depth-peeled layers, so the training
target shows the opaque core through the shell; the candidate trains kd's alpha."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflod.base.baseline import baseline
from difflod.config import load_config
from difflod.models import open_model
from difflod.scene.views import fixed_views

REF = "asset:glass?triangles=2000&texture_res=64"
SMALL = {"iter": 2, "batch": 1, "train_res": 48, "texture_res": [32, 32], "save_interval": 0,
         "backend": "cpu", "device": "cpu", "init_textures": "base"}


@pytest.fixture(scope="module")
def meshes() -> tuple:
    ref = open_model(REF)
    return ref, baseline(ref, 200, texture_res=32)


def _centre(image: torch.Tensor) -> torch.Tensor:
    h, w = image.shape[:2]
    return image[h // 2 - 3:h // 2 + 4, w // 2 - 3:w // 2 + 4].reshape(-1, 3).mean(0)


def test_null_layers_peel_a_blend_reference(meshes: tuple, tmp_path: Path, trainer_on) -> None:
    auto = trainer_on(meshes, load_config(None, SMALL), tmp_path / "auto")
    one = trainer_on(meshes, load_config(None, {**SMALL, "layers": 1}), tmp_path / "one")
    assert auto.layers == 4 and one.layers == 1
    assert auto.trainable.textures["kd"].base.shape[-1] == 4      # alpha is trained
    assert auto.trainable.alpha_mode == "BLEND"
    views = fixed_views(1, 0)
    bg = torch.zeros(1, 48, 48, 3)
    _, ref_auto, _ = auto.render_pair(auto._candidate(), views, 48, (1, 1), bg, None)
    _, ref_one, _ = one.render_pair(one._candidate(), views, 48, (1, 1), bg, None)
    # the core is orange and green, the glass a pale cyan. Measured (linear RGB, the
    # centre's 7x7 mean): through 4 layers (0.37, 0.32, 0.20), the core's warm colour
    # under 0.3 of tint; with 1 layer (0.13, 0.17, 0.19), the shell's front alone
    # over black: 0.24 apart in red
    seen_through, front_only = _centre(ref_auto[0]), _centre(ref_one[0])
    assert float(seen_through[0] - front_only[0]) > 0.15, (seen_through, front_only)
    # warm: red over blue, as the core (the shell alone is bluish)
    assert float(seen_through[0] - seen_through[2]) > 0.1 > float(front_only[0]
                                                                  - front_only[2])
