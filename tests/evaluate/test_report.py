"""Tests for difflod.evaluate.report: the folder's contents, and the page in headless Chromium."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from difflod.evaluate.report import write_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                        else None)


def _pictures(n: int, res: int, shift: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
    imgs = []
    for k in range(n):
        a = 2 * math.pi * k / max(n, 1)
        disk = ((xx - 0.3 * math.cos(a) - shift) ** 2 + (yy - 0.3 * math.sin(a)) ** 2) < 0.35
        color = torch.stack([0.8 * disk, 0.5 * disk + 0.1 * (yy + 1), 0.3 * disk], -1)
        imgs.append(color.float())
    return torch.stack(imgs).clamp(0, 1)


def _metrics() -> dict:
    pv = {"psnr": [31.2, 29.8, math.inf], "ssim": [0.97, 0.95, 1.0], "flip": [0.04, 0.05, 0.0],
          "iou": [0.99, 0.98, 1.0]}
    cand = {"triangles": 1200, "vertices": 640, "texture_bytes": 3 * 1024 * 1024,
            "file_bytes": 2_500_000, "chamfer": 0.0042, "per_view": pv}
    for k, v in pv.items():
        cand[k] = {"mean": sum(v) / 3, "min": min(v), "max": max(v)}
    return {"settings": {"views": 3, "res": 64, "seed": 0, "backend": "cpu"},
            "reference": {"triangles": 48_000, "vertices": 24_002, "texture_bytes": 12 << 20},
            "candidates": {"difflod": cand}}


def _write(tmp_path: Path) -> Path:
    ref = _pictures(3, 64, 0.0)
    history = [{"iteration": i, "loss": 0.1 * math.exp(-i / 200) + 1e-3,
                "psnr": 20 + 10 * (1 - math.exp(-i / 200))} for i in range(0, 1000, 10)]
    return write_report(
        tmp_path / "report", reference_images=ref,
        candidate_images={"difflod": _pictures(3, 64, 0.05)}, metrics=_metrics(),
        history=history, config={"iter": 1000, "learning_rate": [0.01, 0.001], "ref": "a<b>"},
        turntable={"reference": _pictures(6, 48, 0.0), "difflod": _pictures(6, 48, 0.05)})


def test_report_folder_contents(tmp_path: Path) -> None:
    page = _write(tmp_path)
    folder = page.parent
    text = page.read_text()
    srcs = re.findall(r"src='([^']+)'", text)
    assert srcs and all((folder / s).is_file() for s in srcs)
    assert not re.search(r"(https?:)?//", text.replace("http-equiv", "")), "external resource"
    assert "a&lt;b&gt;" in text and "1,200" in text and "∞" in text
    grid = np.asarray(Image.open(folder / "grid_0.png"))
    assert grid.shape == (3 * 64 + 2 * 4, 3 * 64 + 2 * 4, 3)
    anim = Image.open(folder / srcs[-2]) if "turntable" in srcs[-2] else \
        Image.open(next(folder.glob("turntable.*")))
    assert getattr(anim, "n_frames", 1) == 6
    assert not list(folder.glob(".*tmp*")), "temporary files left behind"


def test_report_rejects_bad_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reference_images"):
        write_report(tmp_path, reference_images=torch.zeros(2, 8, 8), candidate_images={})
    with pytest.raises(ValueError, match="candidate_images"):
        write_report(tmp_path, reference_images=torch.zeros(2, 16, 16, 3),
                     candidate_images={"x": torch.zeros(1, 16, 16, 3)})


_CHECK = """
<script>
window.addEventListener('error', e => { document.title = 'JSERROR ' + e.message; }, true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const out = document.createElement('pre');
  out.id = 'imgcheck';
  out.textContent = imgs.map(i => i.getAttribute('src') + '=' + i.naturalWidth).join(';');
  document.body.appendChild(out);
});
</script>
"""


def test_report_renders_in_headless_chromium(tmp_path: Path,
                                             require_tool: Callable[..., None]) -> None:
    require_tool(CHROMIUM is not None, "chromium (for the browser check of report.html)",
                 "apt-get install chromium")
    assert CHROMIUM is not None
    page = _write(tmp_path)
    # A copy of the page with a probe script: records every image's naturalWidth.
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", _CHECK + "</body>"))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
    dom = subprocess.run(flags + ["--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r"<pre id=\"imgcheck\">([^<]*)</pre>", dom.stdout)
    assert m, "probe script did not run"
    widths = dict(item.rsplit("=", 1) for item in m.group(1).split(";"))
    assert len(widths) >= 3 and all(int(w) > 0 for w in widths.values()), widths
    assert "<title>JSERROR" not in dom.stdout
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "ERR_FILE" in ln]
    assert not console, console

    shot = tmp_path / "shot.png"
    run = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,900",
                                  page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.var() > 0


def test_write_report_for_run_renders_views_and_turntable(tmp_path: Path) -> None:
    from difflod.assets import make
    from difflod.evaluate.report import turntable_frames, write_report_for_run

    ref = make("sphere", triangles=800, seed=0, texture_res=32)
    frames = turntable_frames(ref, 3, 24, backend="cpu")
    assert frames.shape == (3, 24, 24, 3) and float(frames.max()) > 0.05
    page = write_report_for_run(tmp_path / "r", ref, {"self": ref}, _metrics(), backend="cpu",
                                res=32, grid_views=2, turntable=3)
    grid = np.asarray(Image.open(page.parent / "grid_0.png"))
    assert grid.shape == (2 * 32 + 4, 3 * 32 + 8, 3)
    assert next(page.parent.glob("turntable.*")).is_file()


def test_report_grids_show_the_scored_renders_and_their_flip_maps(tmp_path: Path) -> None:
    from matplotlib import colormaps

    from difflod.assets import make
    from difflod.evaluate.evaluate import Pictures
    from difflod.evaluate.report import write_report_for_run

    ref = make("sphere", triangles=800, seed=0, texture_res=32)
    # pictures no renderer makes: a vertical ramp (raster order, row 0 = bottom)
    ramp = torch.linspace(0, 1, 32)[None, :, None, None].expand(2, 32, 32, 3).contiguous()
    flat = torch.full((2, 32, 32, 3), 0.25)
    maps = torch.full((2, 32, 32), 0.5)
    pics = Pictures(reference=ramp, candidates={"self": flat}, flip={"self": maps})
    page = write_report_for_run(tmp_path / "r", ref, {"self": ref}, _metrics(), backend="cpu",
                                res=32, grid_views=2, turntable=0, pictures=pics)
    grid = np.asarray(Image.open(page.parent / "grid_0.png")).astype(np.float32) / 255
    assert grid.shape == (2 * 32 + 4, 3 * 32 + 8, 3)
    # column 0: the ramp, flipped for display (top row = raster's last row = 1.0);
    # PNG stores 8 bits: half a step of 1/255
    ref_col = grid[:32, :32, 0]
    np.testing.assert_allclose(ref_col[:, 5], np.linspace(1, 0, 32), atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(grid[:32, 36:68], 0.25, atol=0.5 / 255 + 1e-6)
    # the heat map is the given error 0.5 through magma, not a FLIP computed anew (0 here)
    heat = colormaps["magma"](0.5)[:3]
    np.testing.assert_allclose(grid[:32, 72:104], np.broadcast_to(heat, (32, 32, 3)),
                               atol=0.5 / 255 + 1e-6)


def test_display_size_area_averages_large_pictures() -> None:
    from difflod.evaluate.report import _display

    # 512 -> 256: each output pixel is the mean of a 2x2 block
    img = torch.rand(1, 512, 512, 3)
    small = _display(img, 256)
    expect = img.flip(1).reshape(1, 256, 2, 256, 2, 3).mean((2, 4))
    assert small.shape == (1, 256, 256, 3)
    torch.testing.assert_close(small, expect, atol=1e-6, rtol=0)
