"""Camera, light and background sampling for training and evaluation.

Training views follow nvdiffmodeling's train loop: the model gets a random
rotation (uniform over SO(3)) plus a translation jitter uniform in
[-0.25, 0.25]^3, the camera sits at distance 3.5 on +z looking at the origin
(`mv = translate(0, 0, -3.5) @ rotation`), and the light is placed at radius
3.5 in a direction drawn cosine-weighted around the camera direction.

"World space" here is the mesh's own space: `campos` and `lightpos` are
expressed in the coordinates of `Mesh.v_pos` (the random rotation is folded
into `mvp`), so shading needs no model matrix.

Evaluation views (`fixed_views`) use the same distribution, drawn from a
generator seeded by a SHA-256 hash of ("eval", seed): a stream disjoint from
any training generator seeded with a small integer, and stable across Python
processes (unlike `hash()`).

This module sits below the renderer: render.pipeline takes a `Views` batch,
and training (optimize), evaluation and the report all draw theirs here.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch

from difflod.config import BACKGROUNDS  # one list of the kinds, validated there too
from difflod.scene import camera
from difflod.scene.light import cosine_sample

__all__ = [
    "BACKGROUNDS",
    "UNIFORM_BACKGROUNDS",
    "Views",
    "background",
    "background_buffer",
    "eval_generator",
    "fixed_views",
    "sample_views",
    "views_from_eye",
]


#: nvdiffmodeling's camera radius.
RADIUS = 3.5


@dataclass(frozen=True)
class Views:
    """A batch of B views.

    Attributes:
        mvp: `[B,4,4]` float32 model-view-projection matrices (clip = mvp @ [p,1]).
        campos: `[B,3]` float32 eye positions in mesh space.
        lightpos: `[B,3]` float32 point light positions in mesh space.
        light_power: light intensity multiplying the BSDF (see scene.light).
    """

    mvp: torch.Tensor
    campos: torch.Tensor
    lightpos: torch.Tensor
    light_power: float = 5.0

    def __post_init__(self) -> None:
        b = self.mvp.shape[0] if self.mvp.dim() == 3 else -1
        if self.mvp.dim() != 3 or self.mvp.shape[1:] != (4, 4):
            raise ValueError(f"Views.mvp must be [B,4,4], got {tuple(self.mvp.shape)}")
        for name in ("campos", "lightpos"):
            t = getattr(self, name)
            if t.shape != (b, 3):
                raise ValueError(f"Views.{name} must be [{b},3], got {tuple(t.shape)}")
            if t.device != self.mvp.device:
                raise ValueError(f"Views.{name} is on {t.device}, mvp on {self.mvp.device}")

    def __len__(self) -> int:
        return int(self.mvp.shape[0])

    def __getitem__(self, index: int | slice | torch.Tensor) -> Views:
        """A sub-batch; an int index keeps the batch dimension (B = 1)."""
        if isinstance(index, int):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"view index {index} out of range for {n} views")
            index = slice(index % n, index % n + 1)
        return dataclasses.replace(self, mvp=self.mvp[index], campos=self.campos[index],
                                   lightpos=self.lightpos[index])

    @property
    def device(self) -> torch.device:
        return self.mvp.device

    def to(self, device: torch.device | str) -> Views:
        return dataclasses.replace(self, mvp=self.mvp.to(device), campos=self.campos.to(device),
                                   lightpos=self.lightpos.to(device))


def sample_views(batch: int, generator: torch.Generator, *, distance: float = RADIUS,
                 fovy: float = camera.DEFAULT_FOVY, aspect: float = 1.0,
                 light_power: float = 5.0, light_distance: float | None = None,
                 translation: float = 0.25, near: float = 0.1, far: float = 1000.0,
                 zoom: float = 1.0, device: torch.device | str | None = None) -> Views:
    """Random training views, drawn as nvdiffmodeling's train loop draws them.

    Args:
        batch: number of views B >= 1.
        generator: CPU torch.Generator; per view it draws the rotation and
            translation, then the light direction.
        distance: camera distance from the origin.
        fovy, aspect, near, far: the projection (see camera.perspective).
        light_power: stored in the Views.
        light_distance: light radius; None means `distance`.
        translation: half-width of the model's translation jitter.
        zoom: > 1: each view shows a random window of the full view, magnified
            by a factor drawn log-uniform in [1, zoom] (a crop: the camera and
            light stay where they are), as a closer look at the model at no
            extra pixel cost. Drawn after the batch's views, which are thus the
            views drawn without zoom.

    Returns:
        Views with `[B,4,4]` mvp and `[B,3]` campos / lightpos on `device`.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if distance <= 0:
        raise ValueError(f"distance must be > 0, got {distance}")
    if not zoom >= 1.0:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    light_r = distance if light_distance is None else light_distance
    proj = camera.perspective(fovy, aspect, near, far).double()
    back = camera.translate(0.0, 0.0, -distance).double()
    mvps, eyes, lights = [], [], []
    for _ in range(batch):
        mv = back @ camera.random_rotation(generator, translation).double()
        eye = torch.linalg.inv(mv)[:3, 3]
        eyes.append(eye)
        lights.append(cosine_sample(eye, generator) * light_r)
        mvps.append(proj @ mv)
    if zoom > 1.0:
        mvps = [_crop(zoom, generator) @ m for m in mvps]
    return _views(mvps, eyes, lights, light_power, device)


def _crop(zoom: float, generator: torch.Generator) -> torch.Tensor:
    """`[4,4]` clip-space magnification by z in [1, zoom] (log-uniform) about a
    random centre, keeping the window inside the full view: NDC x' = z x + o."""
    u = torch.rand(3, generator=generator, dtype=torch.float64)
    z = float(zoom) ** float(u[0])
    crop = torch.eye(4, dtype=torch.float64)
    crop[0, 0] = crop[1, 1] = z
    crop[0, 3], crop[1, 3] = (2.0 * u[1:] - 1.0) * (z - 1.0)
    return crop


def _views(mvps: list[torch.Tensor], eyes: list[torch.Tensor], lights: list[torch.Tensor],
           light_power: float, device: torch.device | str | None) -> Views:
    return Views(mvp=_upload(torch.stack(mvps), device),
                 campos=_upload(torch.stack(eyes), device),
                 lightpos=_upload(torch.stack(lights), device), light_power=float(light_power))


def _upload(t: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """`t` as float32 on `device`. To a GPU through pinned memory, without
    waiting: a copy from pageable memory waits for the GPU's queued work, a
    host sync in every training step."""
    t = t.to(torch.float32)
    dev = torch.device(device) if device is not None else t.device
    if dev.type != "cuda":
        return t.to(dev)
    return t.pin_memory().to(dev, non_blocking=True)


def eval_generator(seed: int) -> torch.Generator:
    """CPU generator for evaluation views, seeded from SHA-256 of ("eval", seed)."""
    digest = hashlib.sha256(f"difflod/eval/{int(seed)}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def fixed_views(count: int, seed: int = 0, **kwargs: object) -> Views:
    """Deterministic held-out views: `sample_views(count, eval_generator(seed), **kwargs)`."""
    return sample_views(count, eval_generator(seed), **kwargs)  # type: ignore[arg-type]


def views_from_eye(eye: object, up: object = (0.0, 1.0, 0.0), *, at: object = (0.0, 0.0, 0.0),
                   fovy: float = camera.DEFAULT_FOVY, aspect: float = 1.0,
                   light_power: float = 5.0, near: float = 0.1, far: float = 1000.0,
                   device: torch.device | str | None = None) -> Views:
    """One view (B = 1) from nvdiffmodeling's display camera: look_at(eye, at, up),
    with the light at the eye (its camera_eye / camera_up settings)."""
    mv = camera.look_at(eye, at, up).double()
    proj = camera.perspective(fovy, aspect, near, far).double()
    eye_pos = torch.linalg.inv(mv)[:3, 3]
    return _views([proj @ mv], [eye_pos], [eye_pos.clone()], light_power, device)


UNIFORM_BACKGROUNDS = ("black", "white", "solid")  # one colour per image


def background(kind: str, batch: int, height: int, width: int,
               generator: torch.Generator | None = None,
               device: torch.device | str | None = None,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """Background image `[B,H,W,3]` float32, linear values; the uniform kinds
    (UNIFORM_BACKGROUNDS) are a broadcast view of one colour per image (stride
    0 over the pixels: read it, don't write it), so a batch's background takes
    no image-sized memory.

    Kinds: "black" (0), "white" (1), "checker" (nvdiffmodeling's 16x16-tile
    checkerboard of 0.66 and 0.33, first tile 0.66), "solid" (one colour per
    image, uniform in [0,1) per channel, drawn from `generator`), "random"
    (uniform noise in [0,1) per pixel and channel, drawn from `generator` on
    each call; on a GPU device the noise is drawn there by a device generator
    seeded with one draw of `generator`, so it differs from the CPU's noise
    for the same seed).

    `out`: a buffer to draw into (`background_buffer`'s, on `device`), so that
    a recorded training step's input is drawn in place, with no second copy
    alive at the step's peak; the result is then a view of it. The values are
    the same either way.

    Raises:
        ValueError: unknown kind (the message lists the kinds), bad sizes, a
            buffer of the wrong shape, or "random" or "solid" without a generator.
    """
    if kind not in BACKGROUNDS:
        raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")
    if batch < 1 or height < 1 or width < 1:
        raise ValueError(f"background size must be positive, got B={batch} H={height} W={width}")
    shape = (batch, height, width, 3)
    stored = (batch, 1, 1, 3) if kind in UNIFORM_BACKGROUNDS else shape
    if out is not None and (tuple(out.shape) != stored or out.dtype != torch.float32):
        raise ValueError(f"background {kind!r}: the buffer must be float32 {list(stored)}, "
                         f"got {out.dtype} {list(out.shape)}")
    if kind in ("black", "white", "checker"):
        if kind == "checker":
            rows = torch.arange(height, device=device) * 16 // height
            cols = torch.arange(width, device=device) * 16 // width
            odd = (rows[:, None] + cols[None, :]) % 2
            img = torch.where(odd == 0, 0.66, 0.33).to(torch.float32)[None, :, :, None]
        else:
            img = torch.full((batch, 1, 1, 3), 0.0 if kind == "black" else 1.0,
                             dtype=torch.float32, device=device)
        return _stored(img.expand(stored), out).expand(shape)
    if generator is None:
        raise ValueError(f"background {kind!r} needs a generator")
    if kind == "solid":
        colour = torch.rand((batch, 1, 1, 3), generator=generator, dtype=torch.float32)
        return _stored(colour.to(device), out).expand(shape)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cpu":
        return _stored(torch.rand(shape, generator=generator, dtype=torch.float32), out)
    # on a GPU: draw there (no host work, no copy) from a device generator seeded
    # by one draw of `generator`, so runs stay deterministic per seed and backend
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    dev_gen = torch.Generator(device=dev).manual_seed(seed)
    if out is not None:
        return torch.rand(shape, generator=dev_gen, dtype=torch.float32, device=dev, out=out)
    return torch.rand(shape, generator=dev_gen, dtype=torch.float32, device=dev)


def background_buffer(kind: str, batch: int, height: int, width: int,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """An uninitialised buffer for `background(kind, ..., out=)`: `[B,1,1,3]`
    for the uniform kinds, `[B,H,W,3]` for the others."""
    shape = (batch, 1, 1, 3) if kind in UNIFORM_BACKGROUNDS else (batch, height, width, 3)
    return torch.empty(shape, dtype=torch.float32, device=device)


def _stored(values: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """`values` copied into `out` where there is one; else `values` (contiguous
    unless it is one colour per image)."""
    if out is None:
        return values if values.shape[1:3] == (1, 1) else values.contiguous()
    return out.copy_(values)
