"""Speed of ``optrun tune``: trials per second against PyTorch, the cost of a trial outside its epochs, and
``--jobs 2`` against ``--jobs 1``.

    python benchmarks/tune_speed.py [--rounds 8] [--repeats 3]

(a) Trials per second. A trial is the MNIST-1D MLP (hidden [100, 100], relu, batch 32, 20 epochs, Adam)
    trained on the training split less a tenth and scored on that tenth. optrun's trial is ``run_trial``, as
    a worker runs it (its data loaded once per process, every epoch evaluated); PyTorch's, on one thread, is a
    plain loop a user would write on the same data: build the network, train 20 epochs, score the validation
    split once. Alternated trial by trial; target: optrun at least 2x PyTorch's rate.
(b) The cost of a trial outside its epochs: parsing its config, taking its data from the process's cache,
    building its network and optimizer, as a share of the trial with its ``fit`` (every epoch's steps and
    evaluation); target: at most 10% for trials of a second. The first trial of
    a process also loads the data, which the others reuse: both are printed.
(c) ``optrun tune --jobs 2`` against ``--jobs 1``: the whole command, alternated, on 8 trials of about a second
    (sgd and adam, 4 learning rates each, 60 epochs) and their evaluation (one seed each); also the time to
    the last trial (summary.json's trials_wall_seconds; a label's evaluation runs begin once its own trials
    are in, so some run before it). Target: at most 0.6.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from optrun import threads
from optrun.config import TuneConfig, parse_config
from optrun.problems import NETWORK
from optrun.train import fit
from optrun.tune import plan, run_trial, tuning_data

try:
    import torch
except ImportError:
    torch = None

TRIAL = {
    "name": "trials",
    "dataset": {"name": "mnist1d"},
    "model": {"hidden": [100, 100]},
    "train": {"epochs": 20},
    "optimizers": {"adam": None},
    "tune": {"budget": 8, "space": {"learning_rate": {"log": [1e-4, 1e-1]}}},
}


def torch_trial(config, lr: float) -> float:
    """A plain PyTorch loop on the trial's data: build, train, score the validation split once."""
    data = tuning_data(config)  # the same arrays: the validation split in the test split's place
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_val, y_val = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    torch.manual_seed(config.seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 100), torch.nn.ReLU(), torch.nn.Linear(100, 100), torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn, batch = torch.nn.CrossEntropyLoss(), config.train.batch_size
    for _ in range(config.train.epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), batch):
            idx = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(x.index_select(0, idx)), y.index_select(0, idx)).backward()
            optimizer.step()
    with torch.no_grad():
        return float((net(x_val).argmax(1) == y_val).float().mean())


def trials_per_second(rounds: int) -> None:
    threads.use(1)
    if torch is not None:
        torch.set_num_threads(1)
    config = parse_config(TRIAL, "trials", TuneConfig)
    trials = plan(config)
    tasks = [(t.config.to_dict(), "validation_accuracy", "last") for t in trials]
    first = time.perf_counter()
    run_trial(tasks[0])  # loads the data (and the compiled epoch's cache) once, as a worker's first trial does
    first = time.perf_counter() - first
    ours, theirs, outside = [], [], []
    for i in range(rounds):
        planned, task = trials[i % len(trials)], tasks[i % len(tasks)]
        start = time.perf_counter()
        result = run_trial(task)
        ours.append(time.perf_counter() - start)
        assert result.status == "completed"
        # run_trial's steps, timed apart: all but fit is the trial's cost outside its epochs
        start = time.perf_counter()
        experiment = NETWORK.prepare(parse_config(task[0]), tuning_data(planned.config))
        prepared = time.perf_counter()
        fit(experiment)
        fitted = time.perf_counter()
        outside.append((prepared - start) / (fitted - start))
        if torch is not None:
            start = time.perf_counter()
            torch_trial(planned.config, planned.setting["learning_rate"])
            theirs.append(time.perf_counter() - start)
    ours_s = statistics.median(ours)
    print("(a) trials per second, MNIST-1D MLP [100, 100], 20 epochs, one thread")
    print(f"    optrun   {1 / ours_s:6.2f} trials/s ({ours_s:.3f} s a trial)")
    if theirs:
        theirs_s = statistics.median(theirs)
        ratio = theirs_s / ours_s
        print(f"    PyTorch  {1 / theirs_s:6.2f} trials/s ({theirs_s:.3f} s a trial)")
        print(f"    optrun / PyTorch rate: {ratio:.2f}x   target >= 2x: {'met' if ratio >= 2 else 'NOT met'}")
    share = statistics.median(outside)
    print("(b) a trial's cost outside its epochs (parse, data from the process's cache, build, score)")
    print(f"    {share:.1%} of a trial of {ours_s:.2f} s   target <= 10%: {'met' if share <= 0.1 else 'NOT met'}")
    print(f"    the process's first trial, which loads the data: {first:.3f} s")


JOBS_CONFIG = """\
name: jobs
dataset: {name: mnist1d}
model: {hidden: [100, 100]}
train: {epochs: 60}
seeds: 1
optimizers: {sgd: null, adam: null}
tune:
  budget: 4
  space: {learning_rate: {log: [1.0e-3, 1.0e-1]}}
"""


def command(jobs: int, config: Path, runs: Path) -> tuple[float, float, Path]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "optrun", "tune", str(config), "--jobs", str(jobs), "--runs-dir", str(runs), "-q"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    wall = time.perf_counter() - start
    path = Path(out.strip())
    return wall, json.loads((path / "summary.json").read_text())["trials_wall_seconds"], path


def trials_csv(path: Path) -> list[list[str]]:
    rows = [line.split(",") for line in (path / "trials.csv").read_text().splitlines()]
    drop = rows[0].index("seconds")
    return sorted(r[:drop] + r[drop + 1 :] for r in rows)


def jobs_ratio(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "jobs.yaml"
        config.write_text(JOBS_CONFIG)
        command(1, config, Path(tmp) / "warm")  # caches: the compiled epoch, the data
        walls, phases, same = [], [], True
        for _ in range(repeats):
            one, one_trials, one_path = command(1, config, Path(tmp) / "runs")
            two, two_trials, two_path = command(2, config, Path(tmp) / "runs")
            walls.append(two / one)
            phases.append(two_trials / one_trials)
            same &= trials_csv(one_path) == trials_csv(two_path)
            sides = (f"--jobs {j} {wall:5.2f} s (trials {trials:5.2f} s)" for j, wall, trials in
                     ((1, one, one_trials), (2, two, two_trials)))  # fmt: skip
            print("    " + "   ".join(sides))
    wall, phase = statistics.median(walls), statistics.median(phases)
    print(f"(c) --jobs 2 / --jobs 1, median of {repeats}: whole command {wall:.2f}, trials alone {phase:.2f}   "
          f"target <= 0.6: {'met' if wall <= 0.6 else 'NOT met'}; trials.csv the same: {same}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="trials timed on each side in (a) and (b)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of commands in (c)")
    args = parser.parse_args()
    np.seterr(all="ignore")
    trials_per_second(args.rounds)
    jobs_ratio(args.repeats)


if __name__ == "__main__":
    main()
