"""three.js (headless Chromium) against difflod's renderer, on files difflod writes.

The reference picture is difflod's render of an in-memory mesh; the three.js
picture is the GLB that difflod wrote of it, as three.js's GLTFLoader shows it.
Measured with this test's asset and settings (spiky, 3k triangles, 256^2 textures,
6 views at 128^2, roughness >= 0.3, striped specular strength), PSNR over the
pixels both renderers cover fully, in dB:

    the same file                    31.1
    specular channel dropped (0)     27.4
    specular channel inverted        25.7
    normal map's green flipped       23.7
    normal map dropped               23.8

The two renderers differ where three.js does more than glTF's reference BSDF
(multiple-scattering compensation, roughness widened by the screen-space
normal change) and in texture filtering; silhouettes are compared separately
(antialiasing differs: MSAA against difflod's analytic edges). The threshold
29.5 dB sits between the agreement and the nearest fault.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import difflod
from difflod.assets import make
from difflod.evaluate import metrics
from difflod.evaluate.evaluate import evaluate, normalize_to, render_threejs, render_views
from difflod.scene.views import fixed_views

THRESHOLD_DB = 29.5



def _striped(mesh: difflod.Mesh) -> difflod.Mesh:
    """Specular strength in 8 stripes of 0 and 1, roughness >= 0.3, no metal."""
    def change(m: difflod.Material) -> difflod.Material:
        h, w = m.ks.shape[:2]
        stripes = (torch.arange(w)[None, :].expand(h, w) // (w // 8) % 2).float()[..., None]
        ks = torch.cat([stripes, m.ks[..., 1:2].clamp(min=0.3), torch.zeros_like(stripes)], -1)
        return dataclasses.replace(m, ks=ks)
    return mesh.replace(materials=tuple(change(m) for m in mesh.materials))


def _with(mesh: difflod.Mesh, **fields: object) -> difflod.Mesh:
    return mesh.replace(materials=tuple(dataclasses.replace(m, **fields)
                                        for m in mesh.materials))


def _interior_psnr(ref: tuple[torch.Tensor, torch.Tensor],
                   got: tuple[torch.Tensor, torch.Tensor]) -> float:
    inner = ((ref[1] > 0.999) & (got[1] > 0.999)).float()
    mse = (((ref[0] - got[0]) * inner) ** 2).sum() / (inner.sum() * 3)
    return float(-10.0 * torch.log10(mse))


@pytest.mark.slow

def _threejs_scores(mesh, variants: dict, tmp_path: Path) -> tuple[dict[str, float], tuple, dict]:
    """Each variant written as GLB and drawn by three.js, scored (interior PSNR)
    against difflod's render of `mesh` from the same 6 views at 128²; returns
    (scores, difflod's pictures, three.js's pictures per variant)."""
    files = {}
    for name, variant in variants.items():
        files[name] = tmp_path / f"{name}.glb"
        difflod.save(variant, files[name])
    views = fixed_views(6, 0)
    ours = render_views(normalize_to(mesh, mesh), views, 128)
    theirs = render_threejs(mesh, variants, views, 128, files)
    return {name: _interior_psnr(ours, pics) for name, pics in theirs.items()}, ours, theirs

def test_threejs_shows_difflods_files_as_difflod_renders_them(threejs: None,
                                                               tmp_path: Path) -> None:
    mesh = _striped(make("spiky", 3000, 0, 256))
    m = mesh.materials[0]
    assert m.normal is not None
    variants = {
        "same": mesh,
        "no_specular": _with(mesh, ks=m.ks * torch.tensor([0.0, 1.0, 1.0])),
        "inverted_specular": _with(mesh, ks=torch.cat([1 - m.ks[..., :1], m.ks[..., 1:]], -1)),
        "green_flipped": _with(mesh, normal=m.normal * torch.tensor([1.0, -1.0, 1.0])),
        "no_normal_map": _with(mesh, normal=None),
    }
    scores, ours, theirs = _threejs_scores(mesh, variants, tmp_path)
    assert scores["same"] >= THRESHOLD_DB, scores
    for fault in ("no_specular", "inverted_specular", "green_flipped", "no_normal_map"):
        assert scores[fault] < THRESHOLD_DB, (fault, scores)
    ious = [metrics.silhouette_iou(ours[1][i], theirs["same"][1][i]) for i in range(len(ours[1]))]
    assert min(ious) > 0.98, ious


@pytest.mark.slow
def test_eval_with_threejs_scores_files(threejs: None, tmp_path: Path) -> None:
    """`evaluate(renderer="threejs")` on a reference and a lighter GLB: the same
    metrics, and the same ranking as difflod's renderer."""
    ref = make("sphere", 2000, 0, 64)
    light = make("sphere", 200, 0, 64)
    path = tmp_path / "light.glb"
    difflod.save(light, path)
    kwargs = {"views": 4, "res": 64, "with_flip": False, "chamfer_samples": 2000}
    tj = evaluate(ref, {"light": light, "same": ref}, files={"light": path},
                  renderer="threejs", **kwargs)
    ours = evaluate(ref, {"light": light, "same": ref}, **kwargs)
    assert tj["settings"]["renderer"] == "threejs"
    assert tj["candidates"]["same"]["psnr"]["mean"] == float("inf")  # one file, twice
    for res in (tj, ours):
        assert 15.0 < res["candidates"]["light"]["psnr"]["mean"] < 60.0
    assert abs(tj["candidates"]["light"]["psnr"]["mean"]
               - ours["candidates"]["light"]["psnr"]["mean"]) < 3.0


def test_a_file_threejs_cannot_read_is_one_clear_error(threejs: None, tmp_path: Path) -> None:
    import numpy as np

    from difflod.evaluate.threejs import RendererFailed, render_gltf
    from difflod.scene import camera

    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF\x02\x00\x00\x00not a model at all")
    views = fixed_views(1, 0)
    proj = camera.perspective(camera.DEFAULT_FOVY, 1.0, 0.1, 1000.0)
    with pytest.raises(RendererFailed, match="page failed"):
        render_gltf([(bad, np.eye(4))], views.mvp, proj, views.lightpos, 5.0, 16)


@pytest.mark.slow
def test_threejs_shows_emission_as_difflod_renders_it(threejs: None, tmp_path: Path) -> None:
    """The beacon's glowing panels (emission up to 2.4, so the file carries
    KHR_materials_emissive_strength) through GLTFLoader's emissiveMap, emissive
    and emissiveIntensity, against difflod's color = BSDF x light + emissive.
    The faults: emission dropped (difflod before it read emissive), and the
    strength lost (every value capped at 1). Measured (beacon, 3k triangles,
    256^2 textures, 6 views at 128^2), interior PSNR in dB: the same file 35.2,
    strength lost 28.5, emission dropped 10.6; the module's threshold 29.5
    sits between."""
    mesh = make("beacon", 3000, 0, 256)
    glow = mesh.materials[0].emissive
    assert glow is not None and float(glow.max()) > 1.0
    variants = {"same": mesh, "no_emission": _with(mesh, emissive=None),
                "strength_lost": _with(mesh, emissive=glow.clamp(max=1.0))}
    scores, _, _ = _threejs_scores(mesh, variants, tmp_path)
    assert scores["same"] >= THRESHOLD_DB, scores
    for fault in ("no_emission", "strength_lost"):
        assert scores[fault] < THRESHOLD_DB, (fault, scores)
