"""The optimization loop: render both models, compare, step, clamp.

`Trainer` owns one run's state (the trainable candidate, Adam, the schedules,
the generator) and its checkpoints; `run()` loops to the configured
iteration count and returns the history. It writes no other files and
evaluates nothing: the orchestrators in difflod.run open the models, call
`prepare_meshes` and the Trainer, then write the outputs and evaluate. The
pieces it drives live elsewhere: scene.views (cameras and lights),
losses.py, schedule.py, trainable.py, render.pipeline (rendering), geometry
(normalization, Laplacian, skinning).

Checkpoints: optimize/checkpoint.py (what they hold, how they are written and
checked); the Trainer gathers and restores its state.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from difflod.config import TrainConfig
from difflod.errors import DiffLodError
from difflod.io.image import linear_to_srgb
from difflod.mesh import Mesh
from difflod.optimize.checkpoint import (
    CHECKPOINT,
    mesh_digest,
    read_checkpoint,
    write_checkpoint,
)
from difflod.optimize.frame import Frame
from difflod.optimize.graphed import (
    CapturedStep,
    RecordingError,
    graph_blocker,
    make_capturable,
    measure_pixel_capacity,
    portable_state,
    scale_count,
)
from difflod.optimize.progress import Progress, warmup_notice
from difflod.optimize.readback import PendingSteps
from difflod.optimize.reference_renders import ReferenceRenders
from difflod.optimize.schedule import LaplacianWeight, lr_decay_rate, lr_factor
from difflod.optimize.trainable import Trainable, peel_layers
from difflod.render.backends import warm_up
from difflod.render.materials import mip_stacks

__all__ = ["Trainer", "prepare_meshes", "resolve_device"]


def compile_shading(mode: str, device: torch.device) -> bool:
    """Whether the step's shading runs through torch.compile (config key `compile`):
    "on" or "off"; "auto" is off for now: on the H200 the first compiled step
    did not finish within 150 s (twice), so it is not a default until measured
    to pay (DESIGN.md, GPU code)."""
    del device  # "auto" will choose by device once the GPU path is measured
    return mode == "on"


def resolve_device(name: str) -> torch.device:
    """'auto' → cuda when torch sees a GPU, else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DiffLodError(f"device {name!r} asked for, but torch sees no CUDA GPU here; "
                           f"use --device cpu")
    return torch.device(name)


def prepare_meshes(reference: Mesh, base: Mesh, config: TrainConfig,
                   device: torch.device) -> tuple[Mesh, Mesh, Frame]:
    """Normalize the reference to unit size and fit the base mesh into it.

    As nvdiffmodeling: the reference is centred and scaled so its longest
    side is 2; the base mesh's bounding box is fitted onto the reference's
    (per axis), so a unit sphere can serve as base for any model.
    Returns (reference, base, frame) — `frame` maps results back.
    """
    if base.num_triangles == 0:
        raise DiffLodError("base mesh has no triangles")
    if reference.num_triangles == 0:
        raise DiffLodError("reference mesh has no triangles")
    if not base.has_uv:
        raise DiffLodError("base mesh has no UVs (texture coordinates): make one with "
                           "`difflod simplify`, or give it UVs in a modelling tool")
    from difflod.geometry.tangents import with_shading_frame, with_tangents

    lo, hi = reference.aabb()
    if not float((hi - lo).max()) > 0:
        raise DiffLodError("reference mesh has zero size (all vertices at one point)")
    frame = Frame.from_mesh(reference)
    ref = frame.to_unit(reference.to("cpu"))
    # a reference that never moves gets its shading frame (normals, tangents) once
    # here, not in every step's render (the same values); a posed one keeps the
    # tangents it had for its normal maps. On the CPU: a GPU's scatter-adds sum in
    # any order, and a checkpoint's reference digest must match on resume.
    if not (config.animate and ref.skin is not None):
        ref = with_shading_frame(ref)
    elif ref.v_tng is None and ref.has_uv and any(m.normal is not None for m in ref.materials):
        ref = with_tangents(ref)
    ref = ref.to(device)
    fitted = frame.to_unit(Frame.fit_aabb(base, reference)).to(device)
    return ref, fitted, frame


class Trainer:
    """One optimization run; `run()` loops, `step()` does one iteration.

    Args:
        config: the validated run configuration.
        reference, base: meshes already normalized by `prepare_meshes`.
        out_dir: where checkpoints and progress images go.
        quiet: no progress output.
        on_step: optional callback(iteration, record) for each step of `run()`, once
            its numbers are read back from the device (every log_interval steps).
        rank, world_size: with torch.distributed initialized, this process
            renders views [rank*B/W, (rank+1)*B/W) of each step's batch and
            gradients are averaged over processes (see run.distributed);
            every process draws the same full batch, so results equal a
            single-process run with the same seed.
        reference_renders: a cache shared with other trainers of the same
            reference and seed (an LOD chain's levels), so that a step whose
            views another trainer just rendered reuses its reference images.
        reference_mips: `render.materials.mip_stacks(reference)`, built by a
            caller whose trainers share the reference (an LOD chain: one copy
            of its pyramids, not one per level); None: built here.
    """

    def __init__(self, config: TrainConfig, reference: Mesh, base: Mesh, out_dir: Path, *,
                 quiet: bool = False,
                 on_step: Callable[[int, dict], None] | None = None,
                 rank: int = 0, world_size: int = 1,
                 reference_renders: ReferenceRenders | None = None,
                 reference_mips: list[dict[str, list[torch.Tensor]]] | None = None) -> None:
        from difflod.geometry.laplacian import UniformLaplacian

        if config.batch % world_size:
            raise DiffLodError(f"batch {config.batch} does not split over {world_size} "
                               f"processes: make 'batch' a multiple of the GPU count")
        self.rank, self.world_size = rank, world_size

        # once here, so that the per-step renders can skip their checks (validate=False)
        reference.validate()
        base.validate()
        # spp and reference_spp null resolved here, once, for every render of the run
        spp = config.spp_for(any(m.alpha_mode == "MASK" and m.has_alpha
                                 for m in reference.materials))
        config = config.replace(spp=spp, reference_spp=config.reference_spp_for(spp))
        self.config = config
        self.out_dir = Path(out_dir)
        self.device = base.device
        self.reference = reference
        # a first run's CPU kernels of a step compiled ahead, in parallel processes
        warm_up(config.render_backend, self.device, train=True,
                on_compile=None if quiet or rank != 0 else warmup_notice())
        # its textures never change: their pyramids built once, not every render
        self.reference_mips = mip_stacks(reference) if reference_mips is None \
            else reference_mips
        self.compiled = compile_shading(config.compile, self.device)
        self.generator = torch.Generator().manual_seed(int(config.seed))
        self.trainable = Trainable(base, reference, config, self.generator)
        self.layers = peel_layers(config, reference)  # config `layers`, null resolved
        # the reference is peeled only where it has something to see through
        self.ref_layers = self.layers if any(m.has_alpha for m in reference.materials) else 1
        groups = self.trainable.param_groups()
        if not groups:
            raise DiffLodError("skip_train freezes every parameter: nothing to optimize")
        # fused: one kernel for every parameter's update on a GPU (the same update)
        self.optimizer = torch.optim.Adam(groups, fused=self.device.type == "cuda")
        decay = lr_decay_rate(config.lr_decay, config.iter)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: lr_factor(it, decay))
        detail = self.trainable.detail_mesh()
        self.laplacian = UniformLaplacian(detail.t_pos_idx, detail.num_vertices)
        from difflod.render.topology import Topology

        # edge adjacency for antialiasing: the triangles never change, build it once
        self.topology = {"reference": Topology.from_tris(reference.t_pos_idx),
                         "candidate": Topology.from_tris(detail.t_pos_idx)}
        self.lap_ref = detail.v_pos.detach().clone() if config.relative_laplacian else None
        # the automatic weight's scale for the relative Laplacian, which is 0 at the
        # start: the start's own (absolute) Laplacian (optimize.schedule)
        scale = float(self.laplacian.loss(detail.v_pos.detach())) \
            if self.lap_ref is not None else None
        self.lap_weight = LaplacianWeight(config.laplacian_factor, scale=scale)
        self.iteration = 0
        self.history: list[dict] = []
        self.pending = PendingSteps()  # steps whose numbers are still on the device
        self.progress = Progress(total=config.iter, quiet=quiet or rank != 0,
                                 log_every=config.log_interval)
        self.on_step = on_step
        self.reference_renders = reference_renders
        self.skinned = config.animate and reference.skin is not None
        self.inputs = {"reference": mesh_digest(reference), "base": mesh_digest(base)}
        self.captured: CapturedStep | None = None
        self._bg_buffer: torch.Tensor | None = None  # the recorded step's background
        # slots per layer of the recorded step's renders (None: every pixel),
        # measured before the first recording (optimize.graphed)
        self.pixel_capacity: int | None = None
        self._capacity_measured = False
        self.corners = None
        blocker = graph_blocker(config, self.device, world_size)
        if config.cuda_graph == "on" and blocker is not None:
            raise DiffLodError(f"cuda_graph 'on' asked for, but the step cannot be recorded: "
                               f"{blocker} (use 'auto' or 'off')")
        # "auto" records wherever it can: measured on an H100 at spot.json's
        # settings, 18.3 ms a step recorded (pixel slots) vs 57.2 eager
        self.graphed = config.cuda_graph in ("on", "auto") and blocker is None
        if self.graphed:
            from difflod.render.pipeline import corner_groups

            make_capturable(self.optimizer)
            if self.skinned:  # the triangles of one posed copy per view of the step
                from difflod.geometry.skinning import pose_views

                views_per_step = config.batch // world_size
                detail = pose_views(detail, torch.zeros(views_per_step, device=self.device))
            self.corners = corner_groups(detail)

    # ---- rendering ------------------------------------------------------------
    def _candidate(self) -> Mesh:
        """The mesh rendered this step (detail mesh, with the base's skin if any)."""
        mesh = self.trainable.detail_mesh()
        base = self.trainable.base
        if base.skin is not None and base.v_joints is not None \
                and mesh.num_vertices == base.num_vertices:
            mesh = dataclasses.replace(mesh, v_joints=base.v_joints, v_weights=base.v_weights,
                                       skin=base.skin)
        return mesh

    def render_pair(self, candidate: Mesh, views, res: int, spp: tuple[int, int],
                    bg: torch.Tensor, times: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Render (candidate, reference) colors `[B,res,res,3]` for the views, at
        `spp` = (candidate's, reference's) samples per pixel; with animation
        times `[B]` (a device tensor), each view poses both meshes at its own
        time (geometry.skinning.pose_views: one render of all the posed
        copies). Third: with a pixel capacity (a recorded step's renders), the
        most covered pixels of one layer of either render, counted at the
        candidate's samples (a device scalar), else None."""
        from difflod.geometry.skinning import pose_views
        from difflod.render.pipeline import render_mesh

        cfg = self.config
        capacity = self.pixel_capacity
        per_view = times is not None
        opts = {"min_roughness": cfg.min_roughness, "backend": cfg.render_backend,
                "validate": False, "per_view": per_view,
                "compiled": self.compiled, "capturable": self.graphed or capacity is not None}
        # the reference's slots and count scale with its samples (graphed.scale_count)
        ratio = (spp[1] * spp[1], spp[0] * spp[0])
        counts: list[torch.Tensor] = []
        # both meshes were validated in __init__; the candidate keeps the base's joints
        reference = self.reference if times is None else pose_views(self.reference, times, True)

        def draw_reference() -> torch.Tensor:
            with torch.no_grad():
                out = render_mesh(reference, views, (res, res), layers=self.ref_layers,
                                  background=bg, spp=spp[1], mips=self.reference_mips,
                                  topology=self.topology["reference"],
                                  pixel_capacity=scale_count(capacity, ratio), **opts)
            if out.covered is not None:
                counts.append(scale_count(out.covered, ratio[::-1]))
            return out.color

        # a recorded step renders its reference itself (no lookup on the host)
        if self.reference_renders is None or self.graphed:
            ref = draw_reference()
        else:
            ref = self.reference_renders.get(self.reference, views, bg, times, spp[1],
                                             draw_reference)
        # validate=False: __init__ validated both meshes; the candidate is built
        # from the base (same indices) and rasterize checks its positions finite
        posed = candidate if times is None else pose_views(candidate, times, True)
        out = render_mesh(posed, views, (res, res), layers=self.layers, background=bg,
                          mips=self.trainable.mips(), spp=spp[0],
                          topology=self.topology["candidate"], corners=self.corners,
                          pixel_capacity=capacity, **opts)
        if out.covered is not None:
            counts.append(out.covered)
        return out.color, ref, torch.stack(counts).amax() if counts else None

    # ---- one iteration ----------------------------------------------------------
    def advance(self) -> dict:
        """One iteration with no host sync (but the first one's Laplacian weight);
        its record's numbers are filled by the next `flush`."""
        from difflod.scene.views import background, background_buffer, sample_views

        cfg, it, gen = self.config, self.iteration, self.generator
        t0 = time.perf_counter()
        res, spp = cfg.train_res, (cfg.spp, cfg.reference_spp)
        if cfg.random_train_res:
            res = int(torch.randint(16, cfg.train_res + 1, (1,), generator=gen))
            spp = tuple(min(n * (cfg.train_res // res), 64) for n in spp)
        views = sample_views(cfg.batch, gen, light_power=cfg.light_power, zoom=cfg.train_zoom,
                             device=self.device)
        # a recorded step's background is drawn into its recorded buffer (no second
        # copy alive while it records, the step's peak)
        recorded = self.graphed and not self.lap_weight.needs_loss()
        if recorded and self._bg_buffer is None:
            self._bg_buffer = background_buffer(cfg.train_background, cfg.batch, res, res,
                                                device=self.device)
        bg = background(cfg.train_background, cfg.batch, res, res, gen, device=self.device,
                        out=self._bg_buffer if recorded else None)
        times = None
        if self.skinned:  # each view's pose: a time in the animation's range
            skin = self.reference.skin
            assert skin is not None
            times = (skin.start + torch.rand(cfg.batch, generator=gen, dtype=torch.float64)
                     * skin.duration).to(self.device, torch.float32)
        if self.world_size > 1:  # this process's share of the batch
            per = cfg.batch // self.world_size
            part = slice(self.rank * per, (self.rank + 1) * per)
            views, bg = views[part], bg[part]
            times = None if times is None else times[part]

        try:
            # recorded once the Laplacian weight is fixed (by the first step's Laplacian)
            if recorded:
                lap_w = self._lap_weight_now(None)
                try:
                    numbers = self._replay(views, bg, times, lap_w)
                except RecordingError as e:
                    if cfg.cuda_graph == "on":
                        raise DiffLodError(f"cuda_graph 'on': {e}") from None
                    warnings.warn(f"{e}; training continues with eager steps "
                                  f"(set cuda_graph: off to skip the attempt)",
                                  RuntimeWarning, stacklevel=2)
                    self.graphed, self.captured = False, None
                    numbers, _ = self._compute(views, bg, res, spp, times, lap_w)
            else:
                numbers, lap_w = self._compute(views, bg, res, spp, times, None)
        except torch.cuda.OutOfMemoryError:
            raise DiffLodError(
                f"out of GPU memory at train_res={res}, batch={cfg.batch}, spp={spp[0]}, "
                f"reference_spp={spp[1]}, "
                f"layers={self.layers}, texture_res={list(cfg.texture_res)}: lower 'batch' "
                f"(or train_res / spp / reference_spp / texture_res)") from None
        self.scheduler.step()
        record = {"iteration": it}
        self.pending.add(record, numbers, lap_w, (time.perf_counter() - t0) * 1000.0)
        self.history.append(record)
        self.iteration += 1
        return record

    def _lap_weight_now(self, lap_loss: torch.Tensor | None) -> float:
        """This iteration's Laplacian weight; the first update of an automatic weight
        on the absolute Laplacian reads it back once (it fixes the weight)."""
        value = 0.0
        if self.lap_weight.needs_loss():
            if lap_loss is None:
                raise RuntimeError("the first Laplacian weight needs the Laplacian")
            value = float(lap_loss.detach())
        return self.lap_weight.update(self.iteration, value)

    def _replay(self, views, bg: torch.Tensor, times: torch.Tensor | None,
                lap_w: float) -> torch.Tensor:
        """The step through the CUDA graph (optimize.graphed): its inputs copied
        into the recorded buffers, then the recording replayed. The background
        is already in its buffer (`_bg_buffer`, drawn there by `advance`): a
        uniform one as its `[B,1,1,3]` colours, not a batch of images."""
        cfg = self.config
        bg_shape = bg.shape
        assert self._bg_buffer is not None
        if self.captured is None:
            from difflod.scene.views import Views

            bufs = {"mvp": torch.empty_like(views.mvp), "campos": torch.empty_like(views.campos),
                    "lightpos": torch.empty_like(views.lightpos),
                    "bg": self._bg_buffer,
                    "lap_w": torch.zeros((), dtype=torch.float32, device=self.device)}
            if times is not None:
                bufs["times"] = torch.empty_like(times)
            power = views.light_power

            def step(b: dict[str, torch.Tensor]) -> torch.Tensor:
                v = Views(mvp=b["mvp"], campos=b["campos"], lightpos=b["lightpos"],
                          light_power=power)
                return self._compute(v, b["bg"].expand(bg_shape), cfg.train_res,
                                     (cfg.spp, cfg.reference_spp), b.get("times"),
                                     b["lap_w"])[0]

            if self.pixel_capacity is None and not self._capacity_measured:
                self.pixel_capacity = measure_pixel_capacity(
                    [(self.reference, cfg.reference_spp), (self._candidate(), cfg.spp)], cfg,
                    cfg.train_res, cfg.spp)
                self._capacity_measured = True
            self.captured = CapturedStep(step, bufs, warmup=2)
        inputs = {"mvp": views.mvp, "campos": views.campos, "lightpos": views.lightpos,
                  "lap_w": lap_w}
        if times is not None:
            inputs["times"] = times
        return self.captured(inputs)

    def _compute(self, views, bg: torch.Tensor, res: int, spp: tuple[int, int],
                 times: torch.Tensor | None,
                 lap_w: float | torch.Tensor | None) -> tuple[torch.Tensor, float]:
        """Render, loss, backward, Adam, clamp: (the step's numbers `[5]` on the
        device: loss, Laplacian, MSE, finite, covered pixels past the capacity;
        the Laplacian weight used). `lap_w`:
        this iteration's weight (a device scalar in a recorded step), or None to
        draw it here from this step's Laplacian."""
        from difflod.optimize.losses import image_loss

        cfg = self.config
        candidate = self._candidate()  # subdivided and displaced once per step
        color_opt, color_ref, covered = self.render_pair(candidate, views, res, spp, bg, times)
        img_loss = image_loss(color_opt, color_ref, cfg.loss)
        lap_loss = self.laplacian.loss(candidate.v_pos, self.lap_ref)
        if lap_w is None:
            lap_w = self._lap_weight_now(lap_loss)
        total = img_loss + lap_loss * lap_w
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.world_size > 1:
            img_loss, total = self._allreduce(img_loss, total)

        # the numbers the host needs from this step stay on the device until the
        # next read-back (`flush`); a non-finite step is undone on the device
        with torch.no_grad():
            # the PSNR estimate on clamped sRGB, as evaluate/metrics.py measures it
            srgb_opt = linear_to_srgb(color_opt.detach().clamp(0.0, 1.0))
            mse_t = torch.mean((srgb_opt - linear_to_srgb(color_ref.clamp(0.0, 1.0))) ** 2)
            params = list(self.trainable.tensors().values())
            # one multi-tensor pass: a norm is finite only if every value is (a
            # float32 overflow, |x| ~ 1e19 and up, counts as non-finite too)
            checked = params + [t.grad for t in params if t.grad is not None]
            norms = torch._foreach_norm(checked)
            finite_t = torch.isfinite(torch.stack([total.detach(), *norms])).all()
            # a render with covered pixels past its slots is incomplete: undone too
            over_t = torch.zeros((), dtype=torch.float64, device=mse_t.device) \
                if covered is None else (covered - self.pixel_capacity).clamp_min(0).double()
            keep_t = finite_t & (over_t == 0)
            numbers = torch.stack([img_loss.detach().double(), lap_loss.detach().double(),
                                   mse_t.double(), finite_t.double(), over_t])
            before = [t.detach().clone() for t in params]
            # in place (no second copy of every gradient at the step's peak):
            # a kept step's gradients are finite, so only an undone one changes
            keep_f = keep_t.to(mse_t.dtype)
            for t in params:
                if t.grad is not None:
                    t.grad.nan_to_num_(0.0, 0.0, 0.0).mul_(keep_f)
        self.optimizer.step()
        self.trainable.clamp_()
        with torch.no_grad():
            for t, b in zip(params, before):
                t.copy_(torch.where(keep_t, t, b))
        return numbers, lap_w if isinstance(lap_w, float) else float("nan")

    def step(self) -> dict:
        """One iteration; returns its history record, read back from the device at once.

        The record: {"iteration", "loss" (image loss), "laplacian" (weighted),
        "skipped" (only when the loss or a gradient was NaN/Inf: the step was
        undone on the device, parameters restored; Adam's moments decay as
        for a zero gradient), "psnr" (estimate on this step's batch), "ms" (the
        host's time in the step plus an equal share of the wait for the device
        when its numbers were read back with others', so means over
        log_interval steps are exact)}.
        """
        record = self.advance()
        self.flush()
        return record

    def flush(self) -> list[dict]:
        """Read the pending steps' numbers back from the device in one go
        (optimize.readback); returns the records filled (oldest first). Steps
        that covered more pixels than the recorded step shades have the step
        recorded again with room for them."""
        done = self.pending.read(self.pixel_capacity)
        if done.covered:
            self._grow_capacity(done.covered, done.overflowed)
        return done.records

    def _grow_capacity(self, covered: int, skipped: list[int]) -> None:
        """Steps covered more pixels than the recorded step shades (they were
        undone): record it again with room for `covered` (optimize.graphed)."""
        from difflod.optimize.graphed import capacity_for

        cfg = self.config
        total = cfg.batch * (cfg.train_res * cfg.spp) ** 2
        grown = capacity_for(covered, total)
        warnings.warn(f"iteration {skipped[0]}: {len(skipped)} recorded step(s) covered up to "
                      f"{covered} pixels, more than the {self.pixel_capacity} they shade; they "
                      f"were skipped, and the step is recorded again with "
                      f"{grown if grown is not None else 'every one of the ' + str(total)}",
                      RuntimeWarning, stacklevel=3)
        self.pixel_capacity = grown
        self.captured = None

    def _allreduce(self, *scalars: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Average gradients (and the given scalars) over all processes."""
        import torch.distributed as dist

        params = self.trainable.parameters()
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in params] + [s.detach().reshape(1) for s in scalars])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n
        return tuple(flat[offset + i] for i in range(len(scalars)))

    # ---- loop -------------------------------------------------------------------
    def run(self, *, save_progress: Callable[[int], None] | None = None,
            checkpoint: bool = True) -> list[dict]:
        """Loop from the current iteration to `config.iter`; return the history.

        `save_progress(iteration)` is called by rank 0 every `save_interval`
        iterations and at the end (the orchestrator's callback writes the
        picture of `render_display()`); with `checkpoint`, rank 0 saves a
        checkpoint every `save_interval` iterations.
        """
        for _ in self.iterate(save_progress=save_progress, checkpoint=checkpoint):
            pass
        return self.history

    def iterate(self, *, save_progress: Callable[[int], None] | None = None,
                checkpoint: bool = True) -> Iterator[dict]:
        """`run`'s loop, yielding each step's record: several trainers can step in
        turn (the levels of an LOD chain sharing their reference renders). A
        record's numbers are filled where they are read back: after the first
        step, every log_interval steps and at the end."""
        cfg = self.config
        start = self.iteration
        self.progress.start(start, torch_compile=self.compiled)
        try:
            while self.iteration <= cfg.iter:
                it = self.iteration
                if save_progress is not None and self.rank == 0 and cfg.save_interval \
                        and (it % cfg.save_interval == 0 or it == cfg.iter):  # and the final state
                    save_progress(it)
                if it == cfg.iter:
                    break
                record = self.advance()
                # the numbers come back every log_interval steps, after the warm-up step
                # and at the end: no host sync inside the steps between
                if it == start or (it + 1) % cfg.log_interval == 0 or it + 1 == cfg.iter:
                    for done in self.flush():
                        if self.on_step is not None:
                            self.on_step(done["iteration"], done)
                self.progress.update(record)
                if checkpoint and self.rank == 0 and cfg.save_interval \
                        and (it + 1) % cfg.save_interval == 0:
                    self.save_checkpoint()
                yield record
        finally:  # the progress bar and its compile notice end with the loop
            self.progress.close()

    # ---- progress picture ---------------------------------------------------
    @torch.no_grad()
    def render_display(self) -> torch.Tensor:
        """Candidate | reference side by side, from the config's display camera
        (camera_eye / camera_up) on its background, at display_res.

        Returns:
            `[res, 2*res, 3]` float32 sRGB in [0,1] on the CPU, row 0 at the top.
        """
        from difflod.render.pipeline import render_mesh
        from difflod.scene.views import background, views_from_eye

        cfg = self.config
        res = cfg.resolved_display_res
        view = views_from_eye(cfg.camera_eye, cfg.camera_up, light_power=cfg.light_power,
                              device=self.device)
        bg = background(cfg.background, 1, res, res, self.generator, device=self.device)
        backend = cfg.render_backend
        opt = render_mesh(self._candidate(), view, (res, res), layers=self.layers,
                          background=bg, min_roughness=cfg.min_roughness, backend=backend,
                          mips=self.trainable.mips(), topology=self.topology["candidate"]).color
        ref = render_mesh(self.reference, view, (res, res), layers=self.ref_layers, background=bg,
                          spp=cfg.reference_spp, min_roughness=cfg.min_roughness,
                          backend=backend, mips=self.reference_mips,
                          topology=self.topology["reference"]).color
        img = torch.cat([opt, ref], dim=2)[0]
        # raster row 0 is the bottom row: flip for the picture
        return linear_to_srgb(img.clamp(0.0, 1.0)).flip(0).cpu()

    # ---- checkpoints ----------------------------------------------------------
    def checkpoint_state(self) -> dict:
        self.flush()
        return {
            "iteration": self.iteration,
            "params": self.trainable.state_dict(),
            "optimizer": portable_state(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "laplacian_weight": self.lap_weight.state(),
            "generator": self.generator.get_state(),
            "history": self.history,
            "config": self.config.to_dict(),
            "inputs": self.inputs,
        }

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT

    def save_checkpoint(self) -> Path:
        """Write checkpoint.pt atomically; a failed write raises OutputFileError."""
        write_checkpoint(self.checkpoint_path, self.checkpoint_state())
        return self.checkpoint_path

    def remove_checkpoint(self) -> None:
        """Delete checkpoint.pt (a finished run that keeps no checkpoint)."""
        self.checkpoint_path.unlink(missing_ok=True)

    def load_checkpoint(self, path: Path) -> None:
        """Continue from the checkpoint at `path`: the next step is the one it stopped before.

        Raises:
            DiffLodError: an unreadable or damaged file, one made with other
                settings, or from other models.
        """
        state = read_checkpoint(path, self.device, self.config, self.inputs)
        try:
            self.trainable.load_state_dict(state["params"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.graphed:
                make_capturable(self.optimizer)
            self.scheduler.load_state_dict(state["scheduler"])
        except (OSError, RuntimeError, KeyError, ValueError, EOFError, AttributeError) as e:
            raise DiffLodError(f"{path}: cannot resume from this checkpoint: {e}") from None
        self.lap_weight = LaplacianWeight.from_state(state["laplacian_weight"])
        self.generator.set_state(state["generator"].cpu())  # loaded onto the run's device
        self.history = list(state["history"])
        self.iteration = int(state["iteration"])
        self.pending.clear()

