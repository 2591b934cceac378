"""One config and seed give the same metrics to the last digit in every entry point, on any number of threads.

Every run below happens in a fresh process whose OpenBLAS uses its Haswell kernels where the CPU has AVX2
(``OPENBLAS_CORETYPE``): with those, a product on two BLAS threads rounds differently from one on a single
thread, as it does on many machines of this project's kind, so a run that let BLAS choose its threads
would show here on any such CPU, not only on the CPU where it was written.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from csv_rows import metrics_without_timing

from optrun import threads

PROBLEMS = {
    # numpy's epoch on the bundled digits; its evaluation comes in two pieces (1,024 and 413 rows)
    "digits": {"dataset": {"name": "digits"}, "model": {"hidden": [64]}, "train": {"epochs": 3}},
    # numpy's epoch with products large enough for BLAS to split them across threads (256 × 200 × 256)
    "tanh": {
        "dataset": {"name": "blobs", "n_samples": 3000, "n_features": 200, "n_classes": 5, "noise": 4.0},
        "model": {"hidden": [256], "activation": "tanh"},
        "train": {"epochs": 3, "batch_size": 256},
    },
    # the compiled epoch: a ReLU network of more than 100,000 parameters
    "compiled": {
        "dataset": {"name": "blobs", "n_samples": 2000, "n_features": 400, "n_classes": 5, "noise": 4.0},
        "model": {"hidden": [256]},
        "train": {"epochs": 3, "batch_size": 100},
    },
    # a convolutional network whose steps are cut in 3 pieces of rows (optrun.models.network.Network.pieces)
    "cnn": {
        "dataset": {"name": "blobs", "n_samples": 1500, "n_features": 256, "n_classes": 5, "noise": 4.0},
        "model": {"type": "cnn", "conv": [{"channels": 16, "kernel": 5, "pool": 2}], "hidden": [32]},
        "train": {"epochs": 3, "batch_size": 256},
    },
}
OPTIMIZER = {"name": "momentum", "learning_rate": 0.01, "mu": 0.9}


def blas_environment(**variables: str) -> dict[str, str]:
    """This process's environment without thread settings, OpenBLAS on its Haswell kernels where the CPU can
    run them, and ``variables``."""
    env = {k: v for k, v in os.environ.items() if k not in (*threads.THREAD_VARIABLES, "OPENBLAS_CORETYPE")}
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " in flags:
        env["OPENBLAS_CORETYPE"] = "Haswell"
    return {**env, **variables}


DRIVER = """
import sys
from pathlib import Path

import optrun
from optrun import threads
from optrun.runs import RunInterrupted, resume, run, write_run

config_path, out = Path(sys.argv[1]), Path(sys.argv[2])
config = optrun.load_config(config_path)
for n in (1, 2):  # the Python API, on one thread and on two
    threads.use(n)
    run(config, out / f"api-run-{n}")
    write_run(out / f"api-train-{n}", config, optrun.train(config), 0.0)


def stop_after_epoch_1(row):
    if row.epoch == 1:
        raise KeyboardInterrupt


try:  # interrupted after epoch 1, then resumed
    run(config, out / "resumed", stop_after_epoch_1)
except RunInterrupted as stopped:
    resume(stopped.path)

try:  # on a Dask cluster of two worker processes
    import distributed
except ImportError:
    sys.exit()
from optrun.compare import compare

comparison = optrun.load_config(sys.argv[3], schema=optrun.CompareConfig)
with distributed.LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=None, host="127.0.0.1") as cluster:
    compare(comparison, out / "dask", scheduler=cluster.scheduler_address)
"""


def optrun_command(*args: object, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "optrun", *map(str, args), "-q"], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_every_entry_point_and_thread_count_gives_the_same_metrics(tmp_path: Path, problem: str) -> None:
    spec = {"name": problem, "seed": 0, **PROBLEMS[problem], "optimizer": OPTIMIZER}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(spec))
    compare_config = tmp_path / "compare.yaml"
    compare_spec = {k: v for k, v in spec.items() if k != "optimizer"}
    compare_config.write_text(yaml.safe_dump({**compare_spec, "seeds": [0, 1], "optimizers": {"m": OPTIMIZER}}))

    runs: dict[str, Path] = {}
    for name, variables in {
        "train": {},
        "train OPENBLAS_NUM_THREADS=1": {"OPENBLAS_NUM_THREADS": "1"},
        "train OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
        "train OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2": {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"},
    }.items():
        runs[name] = Path(
            optrun_command(
                "train", config, "--runs-dir", tmp_path / name, env=blas_environment(**variables), cwd=tmp_path
            )
        )
    for jobs in (1, 2):
        compared = optrun_command("compare", compare_config, "--runs-dir", tmp_path / f"j{jobs}", "--jobs", jobs,
                                  env=blas_environment(), cwd=tmp_path)  # fmt: skip
        runs[f"compare --jobs {jobs}"] = Path(compared) / "m" / "seed-0"
    driver = [sys.executable, "-c", DRIVER, config, tmp_path / "api", compare_config]
    subprocess.run(driver, env=blas_environment(), cwd=tmp_path, check=True)
    for path in sorted((tmp_path / "api").iterdir()):
        if path.name == "dask":
            runs["dask"] = next(path.iterdir()) / "m" / "seed-0"
        else:
            runs[path.name] = next(path.iterdir()) if path.name.startswith(("api-run", "resumed")) else path

    expected = {"api-run-1", "api-run-2", "api-train-1", "api-train-2", "resumed"}
    if importlib.util.find_spec("distributed") is not None:
        expected.add("dask")
    assert expected <= set(runs)
    reference = metrics_without_timing(runs["train"])
    assert len(reference) == 1 + 4  # the header, epochs 0..3
    for name, path in runs.items():
        assert metrics_without_timing(path) == reference, name
