"""What `--resume` finds in an output folder.

A run writes its outputs in a fixed order, each file atomically: config.json,
then progress pictures and checkpoint.pt every save_interval iterations,
then the final files (mesh/, mesh.glb, history.json, the last checkpoint),
then metrics.json and report/, and last of all it deletes checkpoint.pt
(unless the config says `keep_checkpoint`). So a folder left by a killed run
is in one of three states, and `--resume` does the least work that finishes it:

- it holds checkpoint.pt: continue training from it (if training had ended,
  only the final files and the evaluation are made again);
- no checkpoint, but every final file of this very config is there and
  history.json has all `iter` records: the run had finished; nothing to do;
- neither (killed before its first checkpoint, or never started): start
  from the first iteration.

Every run is deterministic for a given seed and backend (DESIGN.md), so all
three end with the files an uninterrupted run writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from difflod.config import TrainConfig
from difflod.optimize.checkpoint import CHECKPOINT

__all__ = ["ResumePoint", "final_files", "find_resume_point"]

# keys that change no output file: a finished run with other values is still finished
_NO_OUTPUT_KEYS = ("log_interval", "keep_checkpoint")


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run starts: from `checkpoint`, from scratch (None), or
    nowhere because the folder holds the finished run (`finished`)."""

    checkpoint: Path | None
    finished: bool = False


def final_files(out_dir: Path, *, evaluate: bool, extra: Iterable[str] = ()) -> list[Path]:
    """The files a finished run of `difflod train` leaves (plus `extra` names)."""
    names = ["config.json", "history.json", "mesh.glb", "mesh/mesh.obj", *extra]
    if evaluate:
        names += ["metrics.json", "report/report.html"]
    return [out_dir / n for n in names]


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same_run(saved: object, config: TrainConfig) -> bool:
    if not isinstance(saved, dict):
        return False
    now = config.to_dict()
    return all(saved.get(k) == v for k, v in now.items() if k not in _NO_OUTPUT_KEYS)


def find_resume_point(out_dir: Path, config: TrainConfig, files: list[Path]) -> ResumePoint:
    """Where `--resume` of `config` into `out_dir` starts; `files` are the run's
    final files (`final_files`)."""
    ckpt = out_dir / CHECKPOINT
    if ckpt.is_file():
        return ResumePoint(ckpt)
    history = _read_json(out_dir / "history.json")
    finished = (all(f.is_file() for f in files)
                and isinstance(history, list) and len(history) == config.iter
                and _same_run(_read_json(out_dir / "config.json"), config))
    return ResumePoint(None, finished=finished)
