"""How much memory a run needs, estimated from its config before anything is allocated (by its problem's
``estimate``: ``optrun.problems``), and what is free.

A run that cannot fit is refused with one line (``check``) before its data is made: otherwise numpy fails
deep inside a generator or the kernel kills the process, after minutes of work. The estimate is an upper
bound of the peak, part by part (``tests/test_memory.py`` measures real runs against it):

- the data: the samples as the model's floats, twice (the set and its split train and test copies live at
  once while it is split; a generated blobs set also needs a temporary of its size while it is made), and
  ``PER_SAMPLE_BYTES`` a sample for the labels, the split's index arrays and the 2-D sets' float64 work;
- the network and its optimizer: parameters, gradients, the optimizer's state, two scratch arrays of the
  reference updates, and the copy of the state a checkpoint saves, with room for one array more;
- the activations: a training batch's (kept for the backward pass), and an evaluation's pieces on every
  thread (``optrun.models.network.Network.evaluation_rows`` rows each);
- on a quadratic objective, its dense Hessian and the rotation that makes it, a few dim × dim arrays;
- the rows of metrics it records, ``PER_ROW_BYTES`` each (kept in memory, read back for the plots): an
  objective's run has a row per step.

A margin of 20% and 16 MiB covers what the parts leave out (the allocator, BLAS's buffers, temporaries).

What is free: the kernel's estimate of the memory available to new allocations (``MemAvailable``), or less
where the process's cgroup (a container's limit) allows less.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from optrun.schema import ConfigError

log = logging.getLogger("optrun")

OVERHEAD_SHARE, OVERHEAD_BYTES = 0.2, 16 << 20
"""The estimate's margin over its parts: measured peaks of runs of 0.3-0.7 GiB exceeded the parts by 2-17%."""

PER_SAMPLE_BYTES = 80
"""Bytes a sample costs besides its features while a set is made and split: about ten int64s or float64s
(its label, the permutation, the split's ranks and indices; a 2-D generator's angles and coordinates)."""

PER_ROW_BYTES = 1024
"""Bytes a row of metrics costs: its record in the run, the same read back for the table and the plots."""

QUADRATIC_MATRICES = 5
"""dim × dim float64 arrays alive at once while a rotated quadratic is made: the Gaussian draw, its QR
factors, the rotation scaled by the eigenvalues, and the Hessian."""


@dataclass(frozen=True)
class Estimate:
    """Bytes a run needs at its peak, by part."""

    data: int
    model: int  # parameters, gradients, optimizer state and checkpoint copies; a quadratic's matrices
    activations: int
    rows: int  # the metrics recorded

    @property
    def parts(self) -> dict[str, int]:
        """Each part by name, and what the parts do not count (the allocator's rounding and free lists, BLAS's
        buffers, temporaries) as ``other``."""
        parts = {"data": self.data, "network and optimizer": self.model, "activations": self.activations}
        parts["metrics"] = self.rows
        return parts | {"other": int(OVERHEAD_SHARE * sum(parts.values())) + OVERHEAD_BYTES}

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        """``80 TiB: data 72.8 TiB, network and optimizer 1.2 MiB, activations 4.1 MiB, other 7.28 TiB``."""
        return f"{size(self.total)}: " + ", ".join(f"{name} {size(b)}" for name, b in self.parts.items() if b)


def available() -> int | None:
    """Bytes this process can still allocate: ``MemAvailable``, or what its cgroup's limit leaves, whichever
    is less; None where neither can be read (not Linux)."""
    free = []
    try:
        meminfo = Path("/proc/meminfo").read_text()
        free += [int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            free.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(free) if free else None


def check(need: Estimate) -> Estimate:
    """``need``, a run's estimate (its problem's ``estimate``); ConfigError naming the memory needed and the
    memory available when the run cannot fit."""
    free = available()
    if free is not None and need.total > free:
        advice = {
            "data": "a smaller dataset",
            "network and optimizer": "a smaller network",
            "activations": "a smaller batch or network",
            "metrics": "fewer epochs or steps",
        }
        largest = max(advice, key=lambda part: need.parts[part])
        raise ConfigError(
            f"this run needs about {need.describe()}; {size(free)} of memory is available. Choose {advice[largest]}"
        )
    return need


def runs_that_fit(need: Estimate, runs: int) -> int:
    """How many of ``runs`` runs that each need ``need`` fit in memory at once (at least one); when fewer than
    ``runs``, the ``optrun`` logger says so."""
    free = available()
    if free is None or runs * need.total <= free:
        return runs
    fit = max(1, free // max(need.total, 1))
    log.info(f"running {fit} at a time, not {runs}: each run needs about {size(need.total)}, {size(free)} is free")
    return int(fit)


def size(n_bytes: float) -> str:
    """``36.4 TiB``, ``149 GiB``, ``1010 MiB``: at least three significant digits, in binary units
    (``2.4e+285 EiB`` beyond)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    power = min(int(math.log2(max(n_bytes, 1)) // 10), len(units) - 1)  # math: an int of any size
    value = n_bytes / 1024**power
    return f"{value:.0f} {units[power]}" if 1000 <= value < 1024 else f"{value:.3g} {units[power]}"
