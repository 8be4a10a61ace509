"""Checkpoints of a training run: checkpoint.pt in the run's folder.

Checkpoints hold exactly what resuming needs to continue bit for bit: the
parameters, Adam's moments and step counts, the learning-rate schedule, the
Laplacian weight, the generator, the history, the config, and a digest of
the two meshes the run started from (`inputs`: a resume with another model,
or a base mesh that came out differently, is refused, since the Laplacian's
rest shape and the topology come from it). The Trainer gathers that state
(`Trainer.checkpoint_state`) and restores it; this module writes, reads and
checks the file. torch.save serializes into memory and io.atomic writes the
bytes, so a full disk gives one OutputFileError naming checkpoint.pt
(torch's own file writer reports it as an opaque RuntimeError) and never
leaves a truncated checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from difflod.config import TrainConfig
from difflod.errors import DiffLodError
from difflod.mesh import Mesh

__all__ = ["CHECKPOINT", "mesh_digest", "read_checkpoint", "write_checkpoint"]

CHECKPOINT = "checkpoint.pt"

# Keys that may differ between a checkpoint and the run resuming it.
_RESUMABLE_KEYS = {"iter", "save_interval", "display_interval", "log_interval", "out_dir",
                   "eval_views", "eval_res", "backend", "device", "name", "keep_checkpoint",
                   "compile", "cuda_graph"}


def _feed(h: hashlib._Hash, value: object) -> None:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(type(value).__name__.encode())
        for f in dataclasses.fields(value):
            h.update(f.name.encode())
            _feed(h, getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _feed(h, value[k])
    else:
        h.update(repr(value).encode())


def mesh_digest(mesh: Mesh) -> str:
    """SHA-256 of every tensor and value of `mesh` (materials and skin included):
    equal digests mean bit-identical meshes."""
    h = hashlib.sha256()
    _feed(h, mesh)
    return h.hexdigest()


def write_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically; a failed write raises OutputFileError."""
    from difflod.io.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: Path, device: torch.device, config: TrainConfig,
                    inputs: dict[str, str]) -> dict:
    """The state saved at `path`, checked against the run that resumes it.

    Args:
        device: where its tensors go.
        config: the resuming run's config (keys outside _RESUMABLE_KEYS must match).
        inputs: the resuming run's mesh digests by role ("reference", "base").
    Raises:
        DiffLodError: an unreadable or damaged file, one made with other
            settings, or from other models.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        saved, now = state.get("config", {}), config.to_dict()
        if saved != now:
            # keys a checkpoint lacks (made by an older difflod) are not a mismatch
            changed = sorted(k for k in now if k in saved and saved[k] != now[k]
                             and k not in _RESUMABLE_KEYS)
            if changed:
                raise DiffLodError(f"{path}: the checkpoint was made with other settings "
                                   f"({', '.join(changed)}); resume with the same config")
        for role, digest in state.get("inputs", {}).items():
            if inputs.get(role) != digest:
                raise DiffLodError(
                    f"{path}: the checkpoint was made from another {role} mesh than "
                    f"this run's; resume with the same models (or start afresh)")
    except (OSError, RuntimeError, KeyError, ValueError, EOFError, AttributeError,
            pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise DiffLodError(f"{path}: cannot resume from this checkpoint: {e}") from None
    return state
