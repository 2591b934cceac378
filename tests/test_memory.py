"""Memory: a run that cannot fit is refused before anything is allocated, and the estimate bounds real peaks."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from optrun import memory
from optrun.cli import cli
from optrun.config import CompareConfig, parse_config
from optrun.train import estimate

HUGE = {  # the two configs a new user tried: 36.4 TiB of data; 149 GiB of parameters
    "data": {"dataset": {"name": "blobs", "n_samples": 100_000_000, "n_features": 100_000}},
    "network": {"dataset": {"name": "digits"}, "model": {"hidden": [200_000, 200_000]}},
}


@pytest.mark.parametrize("command", ["train", "compare", "validate"])
@pytest.mark.parametrize("problem", list(HUGE))
def test_a_run_that_cannot_fit_is_one_line_exit_2_and_writes_nothing(tmp_path, command: str, problem: str) -> None:
    path = tmp_path / "huge.yaml"
    optimizer = {"optimizer": {"name": "adam"}} if command != "compare" else {"seeds": 2}
    path.write_text(yaml.safe_dump({**HUGE[problem], **optimizer}))
    args = [command, str(path)] + (["--runs-dir", str(tmp_path / "runs")] if command != "validate" else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert re.search(r"needs about [\d.]+ [GT]iB: data .*; [\d.]+ [KMGT]iB of memory is available", lines[0]), lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_run_is_refused_against_what_is_available(monkeypatch) -> None:
    config = parse_config({"dataset": {"name": "digits"}, "optimizer": {"name": "adam"}})
    need = estimate(config).total
    monkeypatch.setattr(memory, "available", lambda: need - 1)
    with pytest.raises(memory.ConfigError) as refused:
        memory.check(estimate(config))
    needed, free = memory.size(need), memory.size(need - 1)
    assert str(refused.value).startswith(f"this run needs about {needed}: data ")
    assert str(refused.value).endswith(f"; {free} of memory is available. Choose a smaller batch or network")
    steps = parse_config(
        {"objective": {"name": "rosenbrock"}, "train": {"steps": 10**12}, "optimizer": {"name": "sgd"}}
    )
    with pytest.raises(memory.ConfigError, match=r"metrics .* available\. Choose fewer epochs or steps$"):
        memory.check(estimate(steps))
    monkeypatch.setattr(memory, "available", lambda: need)
    assert memory.check(estimate(config)).total == need


def test_a_comparison_runs_at_once_only_as_many_as_fit(monkeypatch, caplog) -> None:
    config = parse_config({"dataset": {"name": "digits"}, "seeds": 1}, schema=CompareConfig)
    need = estimate(config)
    monkeypatch.setattr(memory, "available", lambda: 2 * need.total + 1)
    with caplog.at_level(logging.INFO, logger="optrun"):
        assert memory.runs_that_fit(need, 4) == 2
        assert memory.runs_that_fit(need, 2) == 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["running 2 at a time, not 4"]


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (10**6, "977 KiB"), (149.3 * 2**30, "149 GiB"),
     (36.4 * 2**40, "36.4 TiB"), (5 * 2**50, "5 PiB"), (3 * 10**300, "2.6e+282 EiB")],
)  # fmt: skip
def test_sizes_read_in_binary_units(n_bytes: float, text: str) -> None:
    assert memory.size(n_bytes) == text


MEASURE = """
import json, sys
from pathlib import Path
import optrun
from optrun import memory
from optrun.config import parse_config
from optrun.train import estimate


def peak():  # this process's own high-water mark (getrusage's would count the parent's from before exec)
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) * 1024


spec = json.loads(sys.argv[1])
warm = {"dataset": {"name": "moons", "n_samples": 40}, "model": {"hidden": [4]}, "train": {"epochs": 1}}
optrun.train(parse_config({**warm, "optimizer": spec["optimizer"]}))  # imports and loads what a run uses
before = peak()
config = parse_config(spec)
optrun.run(config, sys.argv[2])  # checkpoints too
print(json.dumps({"used": peak() - before, "estimate": estimate(config).total}))
"""

MEASURED = {  # each about half a GiB at its peak, in a different part
    "data": {
        "dataset": {"name": "blobs", "n_samples": 400_000, "n_features": 200, "n_classes": 5},
        "model": {"hidden": [32]},
        "train": {"epochs": 1, "batch_size": 256},
        "optimizer": {"name": "sgd"},
    },
    "parameters": {
        "dataset": {"name": "digits"},
        "model": {"hidden": [3000, 3000]},
        "train": {"epochs": 1, "batch_size": 64},
        "optimizer": {"name": "adam", "amsgrad": True},
    },
    "samples": {
        "dataset": {"name": "spirals", "n_samples": 2_000_000},
        "model": {"hidden": [16]},
        "train": {"epochs": 1, "batch_size": 4096},
        "optimizer": {"name": "adagrad"},
    },
    "convolutions": {
        "dataset": {"name": "blobs", "n_samples": 20_000, "n_features": 1024, "n_classes": 5},
        "model": {"type": "cnn", "conv": [{"channels": 32, "kernel": 9, "pool": 2}]},
        "train": {"epochs": 1, "batch_size": 256},
        "optimizer": {"name": "adam"},
    },
    "objective": {
        "objective": {"name": "quadratic", "dim": 3000},
        "train": {"steps": 5},
        "optimizer": {"name": "sgd", "learning_rate": 0.01},
    },
}


@pytest.mark.parametrize("spec", list(MEASURED.values()), ids=list(MEASURED))
def test_the_estimate_bounds_the_measured_peak_without_refusing_what_fits(tmp_path, spec: dict) -> None:
    """The peak resident memory a run adds to a process, measured by the kernel: at most the estimate (so
    nothing refused would have fit) and at least a third of it (so the estimate refuses no run it should not)."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(spec), str(tmp_path)], capture_output=True, text=True, check=True
    )
    measured = json.loads(done.stdout)
    assert measured["estimate"] / 3 <= measured["used"] <= measured["estimate"], measured


def test_available_memory_is_what_the_kernel_reports() -> None:
    meminfo = dict(line.split(":") for line in Path("/proc/meminfo").read_text().splitlines())
    total = int(meminfo["MemTotal"].split()[0]) * 1024
    assert 0 < memory.available() <= total


def test_compare_says_when_it_runs_fewer_at_once_to_fit(tmp_path, monkeypatch) -> None:
    spec = {"dataset": {"name": "digits"}, "train": {"epochs": 1, "max_samples": 200}, "seeds": 1}
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({**spec, "optimizers": {"sgd": None, "adam": None}}))
    need = estimate(parse_config(spec | {"optimizers": {"adam": None}}, schema=CompareConfig))
    monkeypatch.setattr(memory, "available", lambda: need.total * 3 // 2)
    result = CliRunner().invoke(cli, ["compare", str(path), "--runs-dir", str(tmp_path / "runs"), "-j", "2"])
    assert result.exit_code == 0, result.output
    assert f"running 1 at a time, not 2: each run needs about {memory.size(need.total)}" in result.output
    assert json.loads(next((tmp_path / "runs").glob("*/summary.json")).read_text())["executor"] == "this process"
