"""Parallel speed-up of ``optrun compare``: wall time of ``--jobs 2`` against ``--jobs 1``, same metrics.

Runs the whole command (interpreter start, runs, plots) on a comparison of small
networks, alternating ``--jobs 1`` and ``--jobs 2`` so that each pair sees the
same machine load, and prints the median over pairs of the wall-time ratio
(target: at most 0.6), the same ratio for the runs alone (compare's
``runs_wall_seconds``), and whether every metric agrees to the last digit.

    python benchmarks/compare_jobs.py [--repeats 5] [--epochs 150] [--seeds 8]

The default workload: the six reference optimizers on three spirals (MLP [64, 64],
tanh), 8 seeds, 150 epochs: 48 runs of about half a second each. About 1.5 s of
every command is serial whatever ``--jobs`` says (starting Python, imports,
drawing the plots), so on short comparisons the whole-command ratio is higher.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = Path(__file__).parent.parent / "configs" / "compare-spirals.yaml"


def run(jobs: int, runs_dir: Path, epochs: int, seeds: int) -> tuple[float, Path]:
    command = [sys.executable, "-m", "optrun", "compare", str(CONFIG), "--jobs", str(jobs), "--seeds", str(seeds)]
    command += ["--set", f"train.epochs={epochs}", "--runs-dir", str(runs_dir), "--quiet"]
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, Path(out.strip())


def fingerprint(compare_dir: Path) -> dict[str, list[list[str]]]:
    """Every metrics.csv without its timing column, and comparison.csv without seconds per epoch."""
    tables = {}
    for path in sorted(compare_dir.glob("*/seed-*/metrics.csv")):
        with path.open() as fh:
            tables[str(path.relative_to(compare_dir))] = [row[:-1] for row in csv.reader(fh)]
    with (compare_dir / "comparison.csv").open() as fh:
        rows = list(csv.reader(fh))
    drop = rows[0].index("seconds_per_epoch")
    tables["comparison.csv"] = [r[:drop] + r[drop + 1 :] for r in rows]
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    walls: dict[int, list[float]] = {1: [], 2: []}
    inner: dict[int, list[float]] = {1: [], 2: []}
    prints = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for jobs in (1, 2):
                wall, compare_dir = run(jobs, Path(tmp), args.epochs, args.seeds)
                walls[jobs].append(wall)
                inner[jobs].append(json.loads((compare_dir / "summary.json").read_text())["runs_wall_seconds"])
                prints.append(fingerprint(compare_dir))
    identical = all(p == prints[0] for p in prints[1:])
    ratio = statistics.median(two / one for one, two in zip(walls[1], walls[2], strict=True))
    runs_ratio = statistics.median(two / one for one, two in zip(inner[1], inner[2], strict=True))
    runs = len([k for k in prints[0] if k != "comparison.csv"])
    print(f"workload: 6 optimizers x {args.seeds} seeds = {runs} runs, spirals MLP [64, 64], {args.epochs} epochs")
    print(
        f"median wall time of {args.repeats}: --jobs 1 {statistics.median(walls[1]):.2f} s, "
        f"--jobs 2 {statistics.median(walls[2]):.2f} s"
    )
    pairs = " ".join(f"{two / one:.3f}" for one, two in zip(walls[1], walls[2], strict=True))
    print(f"ratio jobs 2 / jobs 1 per pair: {pairs}")
    print(f"median ratio, whole command: {ratio:.3f} (target <= 0.6: {'met' if ratio <= 0.6 else 'NOT met'})")
    print(f"median ratio, the runs alone (runs_wall_seconds): {runs_ratio:.3f}")
    print(f"metrics identical across all {2 * args.repeats} runs of the command: {identical}")
    if not identical or ratio > 0.6:
        sys.exit(1)


if __name__ == "__main__":
    main()
