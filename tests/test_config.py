"""Config: nvdiffmodeling keys accepted, bad keys/values named, overrides parsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from difflod.config import TrainConfig, load_config, parse_overrides
from difflod.errors import ConfigError


def _write(tmp_path: Path, data: object, name: str = "c.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_defaults_match_nvdiffmodeling() -> None:
    c = TrainConfig()
    assert (c.iter, c.batch, c.train_res) == (5000, 1, 512)
    # layers and spp: null are nvdiffmodeling's 1 for an opaque reference
    assert c.layers is None and c.layers_for(alpha=False) == 1
    assert c.spp is None and c.spp_for(mask=False) == 1
    assert c.texture_res == (1024, 1024) and c.min_roughness == 0.08
    assert c.displacement == 0.15 and c.light_power == 5.0
    assert c.lr_positions == 0.01 and c.resolved_display_res == 512
    assert c.render_backend is None  # "auto": the render ops choose
    assert TrainConfig(backend="cpu").render_backend == "cpu"


def test_spp_automatic_or_given() -> None:
    from difflod.config import AUTO_SPP

    # cut-out foliage is supersampled unless the config says otherwise
    assert TrainConfig().spp_for(mask=True) == AUTO_SPP == 2
    assert load_config(None, {"spp": 1}).spp_for(mask=True) == 1
    assert load_config(None, {"spp": 4}).spp_for(mask=False) == 4
    with pytest.raises(ConfigError, match="'spp' must be in 1..64 or null"):
        load_config(None, {"spp": 0})


def test_layers_automatic_or_given() -> None:
    from difflod.config import AUTO_LAYERS

    # glass (a BLEND reference) needs the surfaces behind its front layer
    assert TrainConfig().layers_for(alpha=True) == AUTO_LAYERS == 4
    assert load_config(None, {"layers": 1}).layers_for(alpha=True) == 1
    assert load_config(None, {"layers": 8}).layers_for(alpha=False) == 8
    assert load_config(None, {"layers": None}).layers is None
    with pytest.raises(ConfigError, match="'layers' must be in 1..16 or null"):
        load_config(None, {"layers": 0})
    with pytest.raises(ConfigError, match="'layers' must be integer or null"):
        load_config(None, {"layers": "auto"})


def test_every_shipped_config_loads() -> None:
    configs = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.json"))
    assert len(configs) >= 10
    for p in configs:
        c = load_config(p)
        assert c.iter >= 1, p


def test_file_and_overrides(tmp_path: Path) -> None:
    p = _write(tmp_path, {"iter": 100, "texture_res": [256, 512], "learning_rate": [0.01, 0.03],
                          "skip_train": ["kd"], "animate": False})
    c = load_config(p, parse_overrides(["--iter", "7", "--loss=mse", "--train-res", "64"]))
    assert c.iter == 7 and c.loss == "mse" and c.train_res == 64
    assert c.texture_res == (256, 512) and c.skip_train == ("kd",)
    assert c.lr_positions == 0.01 and c.lr_textures == 0.03


@pytest.mark.parametrize("data, needle", [
    ({"itre": 3}, "unknown key 'itre'"),
    ({"iter": "many"}, "'iter' must be an integer"),
    ({"batch": 0}, "'batch' must be >= 1"),
    ({"loss": "l7"}, "'loss' must be one of"),
    ({"background": "pink"}, "'background' must be one of"),
    ({"texture_res": [512]}, "'texture_res' must be a list of 2"),
    ({"skip_train": ["wings"]}, "'skip_train' may only hold"),
    ({"random_train_res": True}, "needs custom_mip"),
    ({"learning_rate": -1}, "'learning_rate' must be"),
    ({"random_textures": "yes"}, "must be true or false"),
    ({"train_zoom": 0.5}, "'train_zoom' must be a number in \\[1, 16\\]"),
    ({"train_zoom": True}, "'train_zoom' must be a finite number"),
])
def test_bad_values_name_the_key(tmp_path: Path, data: dict, needle: str) -> None:
    p = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=needle) as e:
        load_config(p)
    assert str(p) in str(e.value)


def test_bad_json_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text('{\n  "iter": 10,\n  "batch": ,\n}')
    with pytest.raises(ConfigError, match="line 3"):
        load_config(p)


def test_missing_file_and_unknown_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="unknown option --colour"):
        load_config(None, {"colour": 1})
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--iter"])


def test_texture_res_as_one_number() -> None:
    """One number means a square texture, in a file and on the command line."""
    assert load_config(None, {"texture_res": 512}).texture_res == (512, 512)
    assert load_config(None, parse_overrides(["--texture_res", "2048"])).texture_res == (2048, 2048)
    with pytest.raises(ConfigError, match="texture_res"):
        load_config(None, {"texture_res": 0})
    with pytest.raises(ConfigError, match="texture_res"):
        load_config(None, {"texture_res": True})
