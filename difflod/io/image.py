"""Image files and the sRGB transfer function.

- `read_image(path, limits) -> [H,W,C] float32` in [0,1], C = 1 (gray), 2
  (gray+alpha), 3 (RGB) or 4 (RGBA); PNG (1-16 bit, gray/RGB/alpha/palette)
  and JPEG.
- `open_image(fp, source, limits)`: a PNG or JPEG opened by Pillow, its
  header read and its size checked against `ReadLimits.max_texture_size`,
  nothing decoded yet (the glTF reader decodes embedded images through it).
- `write_image(path, img, bits=8|16)`: PNG (8 or 16 bit) or JPEG (8 bit),
  written atomically.
- `srgb_to_linear`, `linear_to_srgb`: the exact piecewise IEC 61966-2-1 curves,
  differentiable torch functions with finite gradients everywhere.

No flips happen here: row 0 of the array is the first stored row of the file
(the top of the picture; for a texture, v = 0 in difflod's UV convention).

Pillow decodes most files. Only PNG and JPEG are accepted (the formats of
OBJ/MTL and glTF textures): Pillow's PNG or JPEG opener is called directly,
so a file of any other format, and a decompression bomb (a small file whose
header declares a huge picture), are refused before any pixel is decoded,
without Pillow's process-wide `Image.MAX_IMAGE_PIXELS`. Pillow silently reduces 16-bit RGB(A) PNGs to 8 bit
and cannot write them, so 16-bit PNGs are read and written through pypng
(pure Python, slower, but exact).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from difflod.errors import InputFileError
from difflod.io.atomic import atomic_path
from difflod.io.limits import ReadLimits

__all__ = ["linear_to_srgb", "open_image", "read_image", "srgb_to_linear", "write_image"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# what Pillow's openers raise on a malformed header
_OPEN_ERRORS = (SyntaxError, OSError, ValueError, EOFError, IndexError, KeyError, TypeError,
                struct.error)


# ---- sRGB ----------------------------------------------------------------------

def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values to linear (IEC 61966-2-1), elementwise, any shape.

    Values are clamped to >= 0 before the power segment so the gradient is
    finite everywhere (the linear segment handles x <= 0.04045).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")  # noqa: TRY004
    lin = x / 12.92
    pw = ((torch.clamp(x, min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(x <= 0.04045, lin, pw)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear values to sRGB encoding (IEC 61966-2-1), elementwise, any shape.

    The power segment is evaluated on max(x, 0.0031308) so its gradient stays
    finite at and below 0 (the linear segment is used there).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")  # noqa: TRY004
    lin = x * 12.92
    pw = 1.055 * torch.clamp(x, min=0.0031308) ** (1.0 / 2.4) - 0.055
    return torch.where(x <= 0.0031308, lin, pw)


# ---- reading -------------------------------------------------------------------

def open_image(fp: IO[bytes], source: str | os.PathLike[str], limits: ReadLimits,
               what: str = "") -> Any:
    """Open a PNG or JPEG without decoding it; its size is checked against `limits`.

    Args:
        fp: a binary file object positioned at the image's first byte.
        source: the file named in errors. what: the image named in errors
            (e.g. "image 2" of a glTF file; empty when `source` is the image).
    Returns:
        a `PIL.ImageFile.ImageFile`, header read, pixels not yet decoded.
    Raises:
        InputFileError: not a PNG/JPEG, a malformed header, or wider or
            taller than `limits.max_texture_size`.
    """
    from PIL import JpegImagePlugin, PngImagePlugin

    pre = f"{what}: " if what else ""
    head = fp.read(8)
    fp.seek(0)
    if head.startswith(_PNG_SIGNATURE):
        opener: Any = PngImagePlugin.PngImageFile
    elif head.startswith(_JPEG_SIGNATURE):
        opener = JpegImagePlugin.JpegImageFile
    else:
        raise InputFileError(source, f"{pre}not a PNG or JPEG file")
    try:
        im = opener(fp)
    except _OPEN_ERRORS as e:
        raise InputFileError(source, f"{pre}cannot decode the image header: "
                                     f"{type(e).__name__}: {e}") from None
    w, h = im.size
    if w < 1 or h < 1:
        raise InputFileError(source, f"{pre}image of {w} x {h} pixels is empty")
    limits.check(source, "max_texture_size", max(w, h),
                 f"{what or 'the image'} is {w} x {h} pixels")
    return im


def _read_png16(path: Path) -> np.ndarray:
    import png  # pypng

    reader = png.Reader(filename=str(path))
    width, height, rows, info = reader.asDirect()
    planes = int(info["planes"])
    arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, planes)
    return arr.astype(np.float32) / float((1 << int(info["bitdepth"])) - 1)


def _pixels(im: Any, path: Path) -> np.ndarray:
    """The decoded pixels of an opened Pillow image, `[H,W]` or `[H,W,C]`."""
    im.load()
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L", "LA", "RGB", "RGBA"):
        pass
    elif mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.float32)
        return (arr / 65535.0)[..., None]
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        im = im.convert("RGB")
    elif mode == "La":
        im = im.convert("LA")
    else:
        raise InputFileError(path, f"unsupported image mode {mode!r}")
    arr = np.asarray(im)
    if arr.dtype == bool:
        return arr.astype(np.float32)
    return arr.astype(np.float32) / 255.0


def read_image(path: str | os.PathLike[str], limits: ReadLimits | None = None) -> torch.Tensor:
    """Read a PNG or JPEG file.

    Args:
        path: the image file.
        limits: the file size and picture size allowed (default `ReadLimits()`);
            checked before anything is decoded.
    Returns:
        `[H,W,C]` float32 tensor in [0,1] on the CPU; C = 1, 2, 3 or 4 as stored
        (palette images become RGB, or RGBA when they carry transparency).
        16-bit PNGs keep their full precision.

    Raises:
        InputFileError: the file is missing, not a PNG or JPEG, too large, or
            cannot be decoded.
    """
    path = Path(path)
    limits = ReadLimits() if limits is None else limits
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after decoding
    except FileNotFoundError:
        raise InputFileError(path, "image file not found") from None
    except OSError as e:
        raise InputFileError(path, f"cannot open image: {e.strerror or e}") from None
    with f:
        limits.check_file(path, "image")
        im = open_image(f, path, limits)
        try:
            with im:
                # IHDR is the first chunk: signature(8) len(4) "IHDR"(4) w(4) h(4) depth(1)
                if im.format == "PNG" and im.tile and _bit_depth(f) == 16:
                    arr = _read_png16(path)
                else:
                    arr = _pixels(im, path)
        except InputFileError:
            raise
        except Exception as e:  # noqa: BLE001 - decoders raise many kinds; all mean a bad file
            raise InputFileError(path, f"cannot decode image: {type(e).__name__}: {e}") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputFileError(path, f"image has unexpected shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _bit_depth(f: IO[bytes]) -> int:
    f.seek(24)
    depth = f.read(1)
    return depth[0] if depth else 0


# ---- writing -------------------------------------------------------------------

def _as_array(img: object) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        arr = img.detach().to("cpu", torch.float32).numpy()
    elif isinstance(img, np.ndarray):
        arr = img.astype(np.float32, copy=False)
    else:
        raise ValueError(f"img must be a torch.Tensor or numpy array [H,W,C], "  # noqa: TRY004
                         f"got {type(img).__name__}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"img must be [H,W,C] with C in 1..4, got shape {tuple(arr.shape)}")
    return np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)


def write_image(path: str | os.PathLike[str], img: torch.Tensor | np.ndarray,
                bits: int = 8) -> None:
    """Write `img` `[H,W,C]` (C in 1..4, values in [0,1], clipped) to a PNG or JPEG.

    Args:
        path: destination; `.png` (8 or 16 bit) or `.jpg`/`.jpeg` (8 bit, no alpha).
        img: float tensor or array; `[H,W]` is taken as one channel.
        bits: 8 or 16 (16 only for PNG).

    The file is written atomically. Row 0 is written first (the top).
    """
    path = Path(path)
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"path must end in .png, .jpg or .jpeg, got {path.name!r}")
    if bits == 16 and suffix != ".png":
        raise ValueError("bits=16 needs a .png path")
    arr = np.clip(_as_array(img), 0.0, 1.0)
    h, w, c = arr.shape
    with atomic_path(path) as tmp:
        if bits == 16:
            import png  # pypng

            q = np.round(arr * 65535.0).astype(np.uint16)
            writer = png.Writer(w, h, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=16,
                                compression=6)
            with open(tmp, "wb") as f:
                writer.write_array(f, q.reshape(-1))
        else:
            from PIL import Image

            q = np.round(arr * 255.0).astype(np.uint8)
            if suffix != ".png" and c in (2, 4):
                raise ValueError("JPEG has no alpha channel: write a .png for C = 2 or 4")
            im = Image.fromarray(q[..., 0] if c == 1 else q)  # L, LA, RGB or RGBA
            if suffix == ".png":
                im.save(tmp, format="PNG", compress_level=6)
            else:
                im.save(tmp, format="JPEG", quality=95)
