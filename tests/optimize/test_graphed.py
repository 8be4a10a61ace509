"""The training step recorded as a CUDA graph (optimize.graphed, config key
`cuda_graph`): where it applies, that it trains as the eager step does, that a
checkpoint it writes loads anywhere, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from difflod.config import load_config
from difflod.errors import ConfigError, DiffLodError
from difflod.models import open_model
from difflod.optimize.graphed import graph_blocker, portable_state
from difflod.optimize.trainer import Trainer, prepare_meshes

GPU = {"ref_mesh": "asset:spiky?triangles=4000&texture_res=64",
       "base_mesh": "asset:sphere?triangles=300", "random_textures": True,
       "iter": 12, "batch": 4, "train_res": 96, "texture_res": [64, 64],
       "save_interval": 0, "log_interval": 4, "backend": "cuda", "learning_rate": 0.03}


def _trainer(changes: dict, device: torch.device, tmp_path: Path) -> Trainer:
    cfg = load_config(None, {**GPU, **changes, "device": str(device)})
    ref, base = open_model(cfg.ref_mesh), open_model(cfg.base_mesh)
    ref_n, base_n, _ = prepare_meshes(ref, base, cfg, device)
    return Trainer(cfg, ref_n, base_n, tmp_path, quiet=True)


def test_graph_blocker_names_each_reason() -> None:
    cpu = torch.device("cpu")
    cfg = load_config(None, {**GPU, "backend": "auto"})
    assert "not cuda" in graph_blocker(cfg, cpu, 1)
    cfg = load_config(None, {**GPU, "random_train_res": True, "custom_mip": True})
    gpu = torch.device("cuda")
    # the first reason that holds is given; on this machine numba's CUDA may be absent
    why = graph_blocker(cfg, gpu, 1)
    assert why is not None and ("random_train_res" in why or "numba" in why)
    assert graph_blocker(load_config(None, {**GPU, "backend": "torch"}), gpu, 1) \
        == "backend 'torch' is not cuda"


def test_cuda_graph_on_where_it_cannot_be_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DiffLodError, match=r"cuda_graph 'on' asked for, but the step cannot "
                                           r"be recorded: the device is cpu, not cuda"):
        _trainer({"cuda_graph": "on", "backend": "cpu"}, torch.device("cpu"), tmp_path)
    t = _trainer({"cuda_graph": "auto", "backend": "cpu", "iter": 2}, torch.device("cpu"),
                 tmp_path)
    assert not t.graphed
    t.run(checkpoint=False)
    assert t.captured is None
    with pytest.raises(ConfigError, match="cuda_graph"):
        load_config(None, {**GPU, "cuda_graph": "yes"})


def test_a_checkpoint_keeps_learning_rates_as_floats() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([{"params": [p], "lr": 0.1}])
    opt.param_groups[0]["lr"] = torch.tensor(0.05)  # as a recorded step keeps it
    opt.param_groups[0]["capturable"] = True
    state = portable_state(opt.state_dict())
    assert state["param_groups"][0]["lr"] == pytest.approx(0.05)
    assert isinstance(state["param_groups"][0]["lr"], float)
    assert state["param_groups"][0]["capturable"] is False
    fresh = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=1.0)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.05)


def _spread(a: tuple, b: tuple) -> tuple[float, float]:
    """(largest relative loss difference over the steps, largest relative distance
    of a trained tensor, |p_a - p_b| / |p_a - its start|) of two runs, each
    (trainer, history, the tensors at the start)."""
    loss = max(abs(y["loss"] - x["loss"]) / x["loss"] for x, y in zip(a[1], b[1], strict=True))
    pa = {k: v.detach() for k, v in a[0].trainable.tensors().items()}
    pb = {k: v.detach() for k, v in b[0].trainable.tensors().items()}
    dist = max(float((pa[k] - pb[k]).norm()) / max(float((pa[k] - a[2][k]).norm()), 1e-12)
               for k in pa)
    return loss, dist


def test_graphed_training_equals_eager_training(cuda: torch.device, tmp_path: Path) -> None:
    """Two eager runs on a GPU already differ (atomic adds in the backward sum in
    any order, and 12 Adam steps at rate 0.03 amplify it; measured on an H100:
    losses 4.0e-3 apart, texels up to 0.10): the recorded run must stay within
    a few times that spread of the eager one (measured: 6.6e-3, 0.10)."""
    runs: dict[str, tuple] = {}
    for name, mode in (("eager", "off"), ("eager again", "off"), ("graphed", "on")):
        t = _trainer({"cuda_graph": mode}, cuda, tmp_path / name)
        start = {k: v.detach().clone() for k, v in t.trainable.tensors().items()}
        runs[name] = (t, t.run(checkpoint=False), start)
    eager, graphed = runs["eager"][0], runs["graphed"][0]
    assert not eager.graphed and eager.captured is None
    # recorded after two eager warm-up steps, then replayed
    assert graphed.captured is not None and graphed.captured.graph is not None
    assert graphed.captured.calls == GPU["iter"] - 1  # step 0 fixes the Laplacian weight
    # its renders shade a fixed number of slots, fewer than the pixels, and no
    # step covered more (none was skipped)
    total = GPU["batch"] * GPU["train_res"] ** 2
    assert graphed.pixel_capacity is not None and graphed.pixel_capacity < total
    assert not any(r.get("skipped") for r in runs["graphed"][1])
    loss_ee, dist_ee = _spread(runs["eager"], runs["eager again"])
    loss_eg, dist_eg = _spread(runs["eager"], runs["graphed"])
    assert loss_eg <= max(3 * loss_ee, 1e-2), (loss_eg, loss_ee)
    assert dist_eg <= max(3 * dist_ee, 0.05), (dist_eg, dist_ee)
    for (a, b) in zip(runs["eager"][1], runs["graphed"][1], strict=True):
        assert b["psnr"] == pytest.approx(a["psnr"], abs=0.25), (a, b)
    assert runs["graphed"][1][-1]["psnr"] > runs["graphed"][1][0]["psnr"] + 0.5  # it trained
    # the learning rate followed the schedule in the recorded Adam too
    assert float(graphed.optimizer.param_groups[0]["lr"]) == pytest.approx(
        float(eager.optimizer.param_groups[0]["lr"]), rel=1e-6)
    # its checkpoint loads into an eager trainer
    path = graphed.save_checkpoint()
    again = _trainer({"cuda_graph": "off"}, cuda, tmp_path / "on")
    again.load_checkpoint(path)
    assert again.iteration == GPU["iter"]


def test_a_supersampled_reference_records_with_slots_at_the_candidates_samples(
        cuda: torch.device, tmp_path: Path) -> None:
    """reference_spp 2: the recorded reference render has 4x the candidate's
    slots (graphed.scale_count), no step overflows them, and the recorded run
    trains as the eager one does (the same bounds as above)."""
    runs = {}
    for name, mode in (("eager", "off"), ("graphed", "on")):
        t = _trainer({"cuda_graph": mode, "reference_spp": 2}, cuda, tmp_path / name)
        runs[name] = (t, t.run(checkpoint=False))
    graphed = runs["graphed"][0]
    assert graphed.config.reference_spp == 2
    assert graphed.captured is not None and graphed.captured.graph is not None
    total = GPU["batch"] * GPU["train_res"] ** 2
    assert graphed.pixel_capacity is not None and graphed.pixel_capacity < total
    assert not any(r.get("skipped") for r in runs["graphed"][1])
    for (a, b) in zip(runs["eager"][1], runs["graphed"][1], strict=True):
        assert b["psnr"] == pytest.approx(a["psnr"], abs=0.25), (a, b)
    assert runs["graphed"][1][-1]["psnr"] > runs["graphed"][1][0]["psnr"] + 0.5


@pytest.mark.parametrize("mode", ["off", "on"])
def test_an_animated_model_trains_on_a_gpu_as_on_the_cpu(cuda: torch.device, tmp_path: Path,
                                                         mode: str) -> None:
    """An animated reference poses on the device each step (one render of the
    views' posed copies), eagerly or recorded (its times go in with the views):
    its losses are the CPU backend's (the same seed draws the same views and
    poses; the kernels differ by rounding)."""
    anim = {"ref_mesh": "asset:skinned_cylinder?triangles=800&texture_res=32",
            "base_mesh": "asset:skinned_cylinder?triangles=200&texture_res=32",
            "animate": True, "iter": 6, "random_textures": False}
    gpu = _trainer({**anim, "backend": "cuda", "cuda_graph": mode}, cuda, tmp_path / "gpu")
    cpu = _trainer({**anim, "backend": "cpu"}, torch.device("cpu"), tmp_path / "cpu")
    assert gpu.skinned and gpu.graphed == (mode == "on")
    for _ in range(6):
        a, b = cpu.step(), gpu.step()
        assert not b.get("skipped")
        assert b["loss"] == pytest.approx(a["loss"], rel=0.02), (a, b)
    if mode == "on":
        assert gpu.captured is not None and gpu.captured.graph is not None


def test_recorded_trainers_one_after_another_leave_no_memory_behind(
        cuda: torch.device, tmp_path: Path) -> None:
    """A dropped recorded trainer frees what it allocated: three in turn leave
    the memory allocated after the first. (torch keeps a cuBLAS workspace for
    every stream that runs a matrix product; each trainer recording on a
    stream of its own left 64 MiB behind on an H100.)"""
    import gc

    after = []
    for i in range(3):
        (tmp_path / str(i)).mkdir()
        t = _trainer({"cuda_graph": "on", "iter": 4}, cuda, tmp_path / str(i))
        t.run(checkpoint=False)
        assert t.captured is not None and t.captured.graph is not None
        del t
        gc.collect()
        torch.cuda.synchronize(cuda)
        torch.cuda.empty_cache()
        after.append(torch.cuda.memory_allocated(cuda))
    assert max(after) - after[0] < 4 * 2**20, [a / 2**20 for a in after]
