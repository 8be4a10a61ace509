"""Image I/O and sRGB curves: reference values, round trips, gradients, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from difflod.errors import InputFileError
from difflod.io.image import linear_to_srgb, read_image, srgb_to_linear, write_image


def test_srgb_reference_values() -> None:
    x = torch.tensor([0.0, 0.04045, 0.5, 1.0], dtype=torch.float64)
    want = torch.tensor([0.0, 0.04045 / 12.92, ((0.5 + 0.055) / 1.055) ** 2.4, 1.0],
                        dtype=torch.float64)
    torch.testing.assert_close(srgb_to_linear(x), want)
    # 0.5 sRGB is about 0.2140 linear (published value)
    assert abs(float(srgb_to_linear(torch.tensor(0.5))) - 0.21404) < 1e-4
    lin = torch.tensor([0.0, 0.0031308, 0.2140, 1.0], dtype=torch.float64)
    torch.testing.assert_close(linear_to_srgb(lin)[[0, 1, 3]],
                               torch.tensor([0.0, 0.0031308 * 12.92, 1.0], dtype=torch.float64))


def test_srgb_round_trip() -> None:
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)
    torch.testing.assert_close(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12, rtol=0)


def test_srgb_gradients() -> None:
    x = torch.tensor([0.001, 0.02, 0.3, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(srgb_to_linear, (x,))
    assert torch.autograd.gradcheck(linear_to_srgb, (x,))
    z = torch.tensor([0.0, -0.1], requires_grad=True)
    (srgb_to_linear(z).sum() + linear_to_srgb(z).sum()).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    torch.testing.assert_close(z.grad, torch.full((2,), 1 / 12.92 + 12.92))


def test_srgb_rejects_non_tensor() -> None:
    with pytest.raises(ValueError, match="x must be a torch.Tensor"):
        srgb_to_linear(0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip(tmp_path: Path, channels: int, bits: int) -> None:
    g = torch.Generator().manual_seed(channels * bits)
    img = torch.rand(6, 9, channels, generator=g)
    p = tmp_path / "a.png"
    write_image(p, img, bits=bits)
    back = read_image(p)
    assert back.shape == img.shape and back.dtype == torch.float32
    tol = 0.5 / 255 + 1e-6 if bits == 8 else 0.5 / 65535 + 1e-6
    assert float((back - img).abs().max()) <= tol
    assert [x.name for x in tmp_path.iterdir()] == ["a.png"]


def test_rows_not_flipped(tmp_path: Path) -> None:
    arr = np.zeros((4, 2, 3), np.uint8)
    arr[0] = 255  # top row white
    Image.fromarray(arr).save(tmp_path / "t.png")
    img = read_image(tmp_path / "t.png")
    assert float(img[0].min()) == 1.0 and float(img[1:].max()) == 0.0


def test_palette_and_jpeg(tmp_path: Path) -> None:
    pal = Image.new("P", (3, 2))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.shape == (2, 3, 3)
    assert img[0, 0].tolist() == [1.0, 0.0, 0.0] and img[0, 1].tolist() == [0.0, 1.0, 0.0]
    rgb = torch.full((8, 8, 3), 0.5)
    write_image(tmp_path / "j.jpg", rgb)
    assert float((read_image(tmp_path / "j.jpg") - 0.5).abs().max()) < 0.02


def test_16bit_gray_precision(tmp_path: Path) -> None:
    raw = (np.arange(12, dtype=np.uint16) * 5001).reshape(3, 4)
    Image.fromarray(raw).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    np.testing.assert_allclose(img[..., 0].numpy(), raw / 65535.0, atol=1e-7)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputFileError, match="bad.png: cannot decode"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="bits"):
        write_image(tmp_path / "x.png", torch.zeros(2, 2, 3), bits=12)
    with pytest.raises(ValueError, match=r"\[H,W,C\]"):
        write_image(tmp_path / "x.png", torch.zeros(2, 2, 5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]
