"""Checkpoints: a network run's whole state after an epoch, saved atomically and checked on load.

``checkpoint.npz`` holds the flat parameters, every optimizer buffer, and a JSON
record of the epoch, the optimizer's step counter and scalars, the batch
order generator's state and the data's fingerprint, with a SHA-256 over all of it. It is written to a
temporary file, flushed to disk (fsync) and renamed over the previous one, so a
reader finds the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from optrun.problems import Experiment

NAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt, or does not fit the run."""


def _digest(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def save(exp: Experiment, run_dir: Path) -> Path:
    """Write the state of ``exp`` after ``exp.epoch`` epochs as ``run_dir/checkpoint.npz``."""
    state = exp.optimizer.state_dict()
    arrays = {"params": exp.model.flat_params}
    for name, per_param in state["state"].items():
        arrays.update({f"optimizer/{name}/{i}": a for i, a in enumerate(per_param)})
    scalars = {k: v for k, v in state.items() if k not in ("state",)}
    meta = {"epoch": exp.epoch, "optimizer": scalars, "batch_order": exp.batch_order.bit_generator.state}
    meta["data"] = exp.data.fingerprint
    meta["sha256"] = _digest(meta, arrays)
    path, tmp = run_dir / NAME, run_dir / f".{NAME}.tmp"
    with tmp.open("wb") as f:  # straight to the file: no copy of the state in memory
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def restore(exp: Experiment, run_dir: Path) -> int:
    """Load ``run_dir/checkpoint.npz`` into ``exp`` (built from the run's config); the epoch it was taken at."""
    path = run_dir / NAME
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no checkpoint to resume from ({NAME} is missing)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "meta"}
            meta = json.loads(str(data["meta"]))
    except Exception as exc:  # a damaged zip or array shows up as any of several errors
        raise CheckpointError(f"{path}: cannot read the checkpoint ({type(exc).__name__}); it is damaged") from None
    expected = meta.pop("sha256", None)
    if expected != _digest(meta, arrays):
        raise CheckpointError(f"{path}: the checkpoint fails its checksum; it is corrupt")
    if arrays["params"].shape != exp.model.flat_params.shape:
        raise CheckpointError(f"{path}: the checkpoint's parameters do not fit this run's network")
    if meta.get("data", exp.data.fingerprint) != exp.data.fingerprint:
        raise CheckpointError(
            f"{path}: dataset {exp.data.name} is not the data the run began with (its files changed since); "
            "resuming would train on other data: start a new run"
        )
    exp.model.flat_params[...] = arrays["params"]
    names = exp.optimizer.state_names
    count = len(exp.optimizer.params)
    state = {n: [arrays[f"optimizer/{n}/{i}"] for i in range(count)] for n in names}
    exp.optimizer.load_state_dict({**meta["optimizer"], "state": state})
    exp.batch_order.bit_generator.state = meta["batch_order"]
    exp.epoch = int(meta["epoch"])
    return exp.epoch
