"""`difflod simplify` of a model with nothing but positions and faces (no UVs,
no normals, no material): the base mesh gets its own atlas and the result
is textured like any other."""

from __future__ import annotations

import json
from pathlib import Path

from difflod.assets import make
from difflod.cli import main
from difflod.io import load


def test_an_obj_without_uvs_or_material_gives_a_textured_result(tmp_path: Path) -> None:
    sphere = make("sphere", 1280, 0, 16)
    lines = [f"v {x:.6f} {y * 1.5:.6f} {z:.6f}" for x, y, z in sphere.v_pos.tolist()]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in sphere.t_pos_idx.tolist()]
    src = tmp_path / "plain.obj"
    src.write_text("\n".join(lines) + "\n")
    assert not load(src).has_uv
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"eval_views": 2, "eval_res": 32, "save_interval": 0}))
    out = tmp_path / "out"
    assert main(["simplify", str(src), "--triangles", "100", "-o", str(out), "--iter", "3",
                 "--train-res", "32", "--batch", "1", "--texture-res", "32", "--config",
                 str(cfg), "--quiet"]) == 0
    result = load(out / "mesh.glb")
    assert result.has_uv and result.num_triangles <= 100
    kd = result.materials[0].kd
    assert kd.shape[:2] == (32, 32)
    # the reference's default material is one colour: the baked texture holds it
    # (8-bit sRGB storage: half a step is ~0.002 in linear at mid grey) ...
    ref_kd = load(src).materials[0].kd.reshape(-1, kd.shape[-1])[0, :3]
    baked = load(out / "qem_bake.glb").materials[0].kd
    assert baked.shape[:2] == (32, 32)
    assert (baked[..., :3] - ref_kd).abs().max() < 0.003
    # ... and 3 Adam steps move a texel by at most about 3 x the texture learning
    # rate (simplify's 0.01): 0.03, plus the storage's half step
    assert (kd[..., :3] - ref_kd).abs().max() < 0.033
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["candidates"]["difflod"]["psnr"]["mean"] > 20.0
