"""A training step recorded once as a CUDA graph and replayed.

An eager GPU step is limited by the host: at spot.json's settings it queues
~1,900 kernel launches (most of them the shading's small elementwise ops,
forward and backward), 30-40 ms of host time for ~13 ms of GPU work on an
H200. A CUDA graph records the launches of one step, and each later step
replays them with one call, so the GPU runs at its own pace.

What a recorded step needs, and where it is provided:

- no host synchronisation and no shape that depends on values: the renders
  use `render_mesh(capturable=True)` with corner groups built once
  (render.pipeline), the Trainer keeps its numbers on the device;
- the same tensors every step: the step's inputs (views, background,
  Laplacian weight) are copied into buffers that the graph reads
  (`CapturedStep.inputs`); the views are still drawn by the CPU generator,
  so a seed draws the same views as the eager path;
- an optimizer that can be recorded: Adam with `capturable=True` and its
  learning rates as device tensors, which the scheduler fills in place;
- warm-up: the first steps run eagerly on the stream the graph is recorded
  on, so numba compiles its kernels and torch sets up its libraries before
  the recording (which cannot allocate outside its own pool or compile);
- a fixed number of shaded pixels: the renders gather each layer's covered
  pixels into `pixel_capacity` slots (render_mesh's `pixel_capacity`), sized
  from the coverage of random batches before the recording, with a margin. A
  step that covers more is undone on the device like a non-finite one, and
  the Trainer records the step again with room for it (`capacity_for`).
  Measured on an H100 at spot.json's settings the shading of every pixel,
  background included, took about 14 of a recorded step's 22 ms on the GPU.

The recorded step computes exactly what the eager step computes (the same
kernels in the same order); tests/optimize/test_graphed.py holds a graphed
run to an eager one on a GPU.
"""

from __future__ import annotations

import functools
import math
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from difflod.config import TrainConfig
from difflod.mesh import Mesh

__all__ = ["CapturedStep", "RecordingError", "capacity_for", "capture_stream", "graph_blocker",
           "make_capturable", "measure_pixel_capacity", "portable_state", "scale_count"]

# slots per covered pixel of the fullest batch seen: room for views and
# positions that cover more than the sampled batches did
CAPACITY_MARGIN = 1.25


class RecordingError(RuntimeError):
    """The step could not be recorded (an op that syncs with the host, or one
    CUDA graphs cannot hold); the message says which."""


@functools.cache
def capture_stream(device_index: int) -> torch.cuda.Stream:
    """The side stream that every recorded step of the process warms up and
    records on (one per device, made on first use).

    One for all: torch keeps a cuBLAS workspace for each (handle, stream)
    that runs a matrix product until the process ends. A stream of each
    recorded step (from torch's pool of 32 per device) left 64 MiB allocated
    per trainer after it was dropped (an H100: 128, 192, 256 MiB after the
    first, second and third recorded trainer of one process), up to 2 GiB
    in a long batch or a benchmark's grid, counted in every later peak.
    Steps share it safely: the host runs one step at a time."""
    return torch.cuda.Stream(torch.device("cuda", device_index))


class CapturedStep:
    """One step function recorded as a CUDA graph after eager warm-up calls.

    Args:
        fn: the step; reads only `inputs`' tensors (and the model's own state),
            returns one device tensor (the step's numbers).
        inputs: name -> device tensor: the buffers `fn` reads, refilled by
            `__call__` before each replay.
        warmup: eager calls before the recording.
    """

    def __init__(self, fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                 inputs: dict[str, torch.Tensor], warmup: int) -> None:
        self.fn = fn
        self.inputs = inputs
        self.warmup = warmup
        self.device = next(iter(inputs.values())).device
        self.stream = capture_stream(self.device.index if self.device.index is not None
                                     else torch.cuda.current_device())
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None
        self.calls = 0

    def __call__(self, values: dict[str, torch.Tensor | float]) -> torch.Tensor:
        """Copy `values` into the input buffers and run the step (eagerly during
        warm-up, then recorded once and replayed); returns its output (a copy)."""
        for name, v in values.items():
            buf = self.inputs[name]
            if isinstance(v, torch.Tensor):
                buf.copy_(v, non_blocking=True)
            else:
                buf.fill_(v)
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            current = torch.cuda.current_stream(self.device)
            self.stream.wait_stream(current)
            with torch.cuda.stream(self.stream):
                out = self.fn(self.inputs)
            current.wait_stream(self.stream)
            return out
        if self.graph is None:
            graph = torch.cuda.CUDAGraph()
            try:
                # relaxed: numba sets its context current around each launch (also on
                # the autograd thread), which the stricter modes count as unsafe
                with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="relaxed"):
                    self.output = self.fn(self.inputs)
            except RuntimeError as e:
                where = traceback.extract_tb(e.__traceback__)
                frames = [f"{Path(f.filename).name}:{f.lineno}" for f in where
                          if "difflod" in f.filename][-4:]
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise RecordingError(f"the training step could not be recorded as a CUDA "
                                     f"graph: {first} (at {' < '.join(reversed(frames))})"
                                     ) from e
            self.graph = graph
        self.graph.replay()
        assert self.output is not None
        return self.output.clone()


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Let `optimizer` (Adam) be recorded: capturable, learning rates as device
    tensors (an LR scheduler then fills them in place), on the device of the
    first parameter of each group."""
    for group in optimizer.param_groups:
        dev = group["params"][0].device
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=dev)


def graph_blocker(config: TrainConfig, device: torch.device, world_size: int) -> str | None:
    """Why the step cannot be recorded as a CUDA graph (optimize.graphed), or None.

    It can where its shapes never change and its kernels launch on torch's
    stream: a CUDA device with the numba-cuda kernels, a fixed training
    resolution, one process, no subdivision/displacement (an animated model's
    poses are drawn on the host and posed on the device: recordable).
    """
    from difflod.render.backends.cuda_launch import SIM, available

    reasons = (
        (device.type != "cuda", f"the device is {device.type}, not cuda"),
        (config.backend not in ("auto", "cuda"), f"backend {config.backend!r} is not cuda"),
        (not available() or SIM, "numba's CUDA kernels are not available"),
        (config.random_train_res, "random_train_res changes the resolution every step"),
        (world_size > 1, "the step is split over several processes"),
        (config.subdivision > 0, "displacement subdivides the mesh every step"),
        (config.position_smoothing > 0, "position_smoothing solves outside torch's stream"),
    )
    return next((why for bad, why in reasons if bad), None)


def portable_state(optimizer_state: dict) -> dict:
    """An optimizer state_dict as an eager optimizer loads it anywhere: learning
    rates as floats, not the device tensors of a recorded step (optimize.graphed)."""
    for group in optimizer_state["param_groups"]:
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        group["capturable"] = False
    return optimizer_state


def measure_pixel_capacity(meshes: Sequence[tuple[Mesh, int]], config: TrainConfig, res: int,
                           spp: int, batches: int = 16) -> int | None:
    """Slots per layer for the recorded step's renders (render_mesh's
    `pixel_capacity`), counted at `spp` samples per pixel: the most pixels
    that the first layer of one training batch covers, over `batches` batches
    of random views, for every (mesh, its samples per pixel) in `meshes` (the
    reference and the candidate; a count at other samples is scaled to `spp`'s
    by `scale_count`), times CAPACITY_MARGIN; None where that reaches every
    pixel (the render then shades them all). A later layer never covers more
    pixels than the first. The views are drawn by a generator of their own, so
    the training's draws stay those of an eager run.
    """
    from difflod.render.pipeline import clip_positions
    from difflod.render.rasterize import rasterize
    from difflod.scene.views import sample_views

    total = config.batch * (res * spp) ** 2
    gen = torch.Generator().manual_seed(int(config.seed) + 7919)
    most = 0
    with torch.no_grad():
        for _ in range(batches):
            views = sample_views(config.batch, gen, zoom=config.train_zoom,
                                 device=meshes[0][0].device)
            for mesh, own in meshes:
                rast, _ = rasterize(clip_positions(mesh.v_pos, views.mvp), mesh.t_pos_idx,
                                    (res * own, res * own), backend=config.render_backend)
                covered = int((rast[..., 3] > 0).sum())
                most = max(most, scale_count(covered, (spp * spp, own * own)))
    return capacity_for(most, total)


def scale_count(count: int | torch.Tensor | None, ratio: tuple[int, int]
                ) -> int | torch.Tensor | None:
    """A pixel count (an int, an integer tensor, or None) at other samples per
    pixel: count x ratio[0] / ratio[1], rounded up (None stays None)."""
    if count is None or ratio[0] == ratio[1]:
        return count
    return (count * ratio[0] + ratio[1] - 1) // ratio[1]


def capacity_for(covered: int, total: int) -> int | None:
    """Slots for renders that cover up to `covered` of `total` pixels in a layer
    (the measured most, or a step that had more than its slots): that count
    with CAPACITY_MARGIN; None where that reaches every pixel."""
    slots = math.ceil(covered * CAPACITY_MARGIN) + 256
    return slots if slots < total else None
