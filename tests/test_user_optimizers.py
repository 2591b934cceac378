"""A user's own optimizer, from their own file: the docs' Lion runs like the built-in at every size, through
train, compare on workers and Dask, and every mistake in the file or the config is one line."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from optrun.cli import cli
from optrun.compare import compare
from optrun.config import CompareConfig, load_config, parse_config
from optrun.optim import OPTIMIZERS, build_optimizer, optimizer_entry, optimizers_markdown, registry
from optrun.optim.base import FUSED_MIN_SIZE
from optrun.runs import read_run

ROOT = Path(__file__).parent.parent
DOCS = (ROOT / "docs" / "optimizers.md").read_text()
LION = re.search(r"## Your own optimizer\n.*?```python\n(.*?)```", DOCS, re.S)
SMALL = {"dataset": {"name": "digits"}, "model": {"hidden": [16]}, "train": {"epochs": 2, "max_samples": 300}}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    """The docs' my_rules.py, written as a user copies it."""
    assert LION is not None, "docs/optimizers.md has no python block under 'Your own optimizer'"
    path = tmp_path / "my_rules.py"
    path.write_text(LION.group(1))
    return path


def steps(name: str, size: int, fused: bool | None = None, n_steps: int = 12) -> np.ndarray:
    """The first 1,000 parameters after ``n_steps`` Lion steps on ``size`` float32 parameters, from the same
    start and gradients for the first 1,000 whatever the size."""
    rng = np.random.default_rng(3)
    p = np.zeros(size, np.float32)
    p[:1000] = rng.standard_normal(1000)
    grads = rng.standard_normal((n_steps, 1000)).astype(np.float32)
    opt = build_optimizer({"name": name, "learning_rate": 0.01, "weight_decay": 0.1}, [p])
    if fused is not None:
        opt.fused = fused
    g = np.zeros(size, np.float32)
    for row in grads:
        g[:1000] = row
        opt.step([g])
    return p[:1000].copy()


def test_the_docs_lion_is_the_built_in_lion_at_1000_and_at_millions_of_parameters(rules: Path) -> None:
    """Elementwise rules: the first 1,000 parameters of a 2.5-million-parameter run (compiled, split across
    threads where that is faster) are those of a 1,000-parameter run (numpy), the user's class and the
    built-in alike, to the last bit; and they moved."""
    user = f"{rules}:Lion"
    want = steps("lion", 1000)
    assert not build_optimizer({"name": user}, [np.zeros(1000, np.float32)]).fused
    assert build_optimizer({"name": user}, [np.zeros(2_500_000, np.float32)]).fused
    runs = [steps(user, 1000), steps(user, 2_500_000), steps("lion", 2_500_000), steps(user, FUSED_MIN_SIZE, False)]
    for got in runs:
        np.testing.assert_array_equal(got, want)
    assert np.abs(want - steps("lion", 1000, n_steps=0)).min() > 0


EDITABLE = '''
import numpy as np
from optrun.optim import Hyperparameters, Optimizer, PositiveFloat


class Plain(Optimizer):
    """Gradient descent.

        θ ← θ − lr·g
    """

    class Spec(Hyperparameters):
        learning_rate: PositiveFloat = 0.5

    def scalars(self):
        return {"lr": self.lr}

    @staticmethod
    def rule(p, g, lr):
        return p - STEP * lr  # without state, θ alone
'''

STEP_BOTH_SIZES = """
import sys
import numpy as np
from optrun.optim import build_optimizer
for size in (1000, 200_000):
    p = np.zeros(size, np.float32)
    opt = build_optimizer({"name": sys.argv[1]}, [p])
    opt.step([np.ones(size, np.float32)])
    print(size, opt.fused, p.min(), p.max())
"""


def test_an_edit_to_a_rule_changes_runs_at_every_size(tmp_path: Path) -> None:
    """The same rule runs both sizes, and the compiled one is compiled again from the edited file: each
    process (as a later run would) steps 1,000 parameters in numpy and 200,000 compiled."""
    path, cache = tmp_path / "edited.py", {**os.environ, "OPTRUN_CACHE": str(tmp_path / "cache")}
    outputs = []
    for step in ("g", "(g + g)"):
        path.write_text(EDITABLE.replace("STEP", step))
        done = subprocess.run([sys.executable, "-c", STEP_BOTH_SIZES, f"{path}:Plain"], capture_output=True,
                              text=True, env=cache, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.split())
    assert outputs[0] == ["1000", "False", "-0.5", "-0.5", "200000", "True", "-0.5", "-0.5"]
    assert outputs[1] == ["1000", "False", "-1.0", "-1.0", "200000", "True", "-1.0", "-1.0"]


def test_a_rule_numba_cannot_compile_runs_in_numpy_and_says_so(tmp_path: Path, caplog) -> None:
    path = tmp_path / "uncompiled.py"
    path.write_text(EDITABLE.replace("STEP", "g.reshape(np.shape(g))"))  # numpy's arrays reshape; numba's floats do not
    p = np.zeros(FUSED_MIN_SIZE, np.float32)
    opt = build_optimizer({"name": f"{path}:Plain"}, [p])
    with caplog.at_level(logging.WARNING, logger="optrun"):
        opt.step([np.ones_like(p)])
        opt.step([np.ones_like(p)])
    np.testing.assert_array_equal(p, np.full_like(p, -1.0))
    assert not opt.fused
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith(
        "optimizer uncompiled.py:Plain: its rule does not compile (TypingError: Unknown attribute 'reshape'"
    )
    assert message.endswith("(uncompiled.py, line 20)); its steps run in numpy")


def write(tmp_path: Path, data: dict, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_train_and_compare_on_two_workers_run_a_users_optimizer_named_relative_to_the_config(
    rules: Path, tmp_path: Path, monkeypatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the path in the config is relative to the config, not to here
    train = write(tmp_path, {**SMALL, "optimizer": {"name": "my_rules.py:Lion", "learning_rate": 0.003}})
    result = CliRunner().invoke(cli, ["train", str(train), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    run = read_run(Path(result.output.strip()))
    assert run.summary["status"] == "completed"
    assert yaml.safe_load((run.path / "config.yaml").read_text())["optimizer"]["name"] == f"{rules}:Lion"
    assert run.records[-1].train_loss < run.records[0].train_loss

    data = {**SMALL, "optimizers": {"lion": {"name": "my_rules.py:Lion", "learning_rate": 0.003}, "sgd": None}}
    result = CliRunner().invoke(cli, ["compare", str(write(tmp_path, data, "cmp.yaml")), "--runs-dir",
                                      str(tmp_path / "runs"), "--jobs", "2", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((Path(result.output.strip()) / "summary.json").read_text())
    assert {label["label"]: [r["status"] for r in label["runs"]] for label in summary["labels"]} == {
        "lion": ["completed"],
        "sgd": ["completed"],
    }
    table = (Path(result.output.strip()) / "comparison.csv").read_text()
    assert ",my_rules.py:Lion," in table and str(tmp_path) not in table  # the file by its name alone


def test_a_dask_cluster_runs_a_users_optimizer_as_a_local_run_does(rules: Path, tmp_path: Path, monkeypatch) -> None:
    distributed = pytest.importorskip("distributed")
    config = parse_config({**SMALL, "optimizers": {"lion": {"name": f"{rules}:Lion", "learning_rate": 0.003}}},
                          schema=CompareConfig)  # fmt: skip
    local = compare(config, tmp_path / "local", jobs=1)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # what a LocalCluster leaves there stays here
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        remote = compare(config, tmp_path / "remote", scheduler=cluster.scheduler_address)
    [here], [there] = local.runs, remote.runs
    assert there.summary["status"] == "completed"
    assert [r.train_loss for r in there.result.records] == [r.train_loss for r in here.result.records]


def test_optimizers_lists_a_users_file_and_the_docs_table_is_the_built_ins(rules: Path) -> None:
    result = CliRunner().invoke(cli, ["optimizers", str(rules), "--markdown"])
    assert result.exit_code == 0, result.output
    assert f"| `{rules}:Lion` | `learning_rate` = 0.0001<br>`beta1` = 0.9<br>" in result.output
    assert "`θ ← θ − lr·(sign(c) + λ·θ)`" in result.output and "| `adamw` |" in result.output
    result = CliRunner().invoke(cli, ["optimizers", str(rules)])
    assert result.exit_code == 0 and "sign(c)" in result.output, result.output
    table = re.search(r"<!-- optimizers table: start -->\n(.*?)<!-- optimizers table: end -->", DOCS, re.S)
    assert table is not None
    want = optimizers_markdown([optimizer_entry(name, cls) for name, cls in OPTIMIZERS.items()])
    assert table.group(1) == want, "docs/optimizers.md's table is stale: paste in 'optrun optimizers --markdown'"


BAD_FILES = [
    ("missing file", None, "nothere.py:Lion", "optimizer: no such file: {dir}/nothere.py"),
    ("syntax error", "class Lion(:\n", "bad.py:Lion", "optimizer: {dir}/bad.py does not import: SyntaxError: "),
    ("raises on import", "raise RuntimeError('boom')\n", "bad.py:Lion",
     "optimizer: {dir}/bad.py does not import: RuntimeError: boom"),
    ("no such class", "LION", "bad.py:Lino", "optimizer: {dir}/bad.py has no 'Lino'; it defines Lion"),
    ("not an optimizer", "class Lion:\n    pass\n", "bad.py:Lion",
     "optimizer: bad.py:Lion is not an optimizer: a subclass of optrun.Optimizer"),
    ("no Spec", "from optrun.optim import Optimizer\nclass Lion(Optimizer):\n    pass\n", "bad.py:Lion",
     "optimizer: bad.py:Lion: it has no Spec: a nested class Spec(Hyperparameters) with its keys and "
     "learning_rate's default"),
    ("key without a default", "from optrun.optim import Hyperparameters, Optimizer\nclass Lion(Optimizer):\n    "
     "class Spec(Hyperparameters):\n        learning_rate: float = 0.1\n        beta: float\n", "bad.py:Lion",
     "optimizer: bad.py:Lion: its Spec must give every key a default; beta has none"),
    ("a number in the rule", "LION".replace("LION", "LION\nLion.rule = staticmethod(lambda p, g, m, b1, c1, b2, c2, "
     "lr, wd: (p - g * lr * 0.5, m))\n"), "bad.py:Lion", "optimizer: bad.py:Lion: its rule uses the number 0.5; "
     "give it as a scalar from scalars() instead (compiled, a number written in the rule computes in float64"),
    ("a named number in the rule", "LION".replace("LION", "LION\nHALF = 0.5\nLion.rule = staticmethod(lambda p, g, "
     "m, b1, c1, b2, c2, lr, wd: (p - g * lr * HALF, m))\n"), "bad.py:Lion",
     "optimizer: bad.py:Lion: its rule uses the number HALF = 0.5; give it as a scalar from scalars() instead"),
    ("a module's number in the rule", "LION".replace("LION", "LION\nimport numpy as np\nLion.rule = staticmethod("
     "lambda p, g, m, b1, c1, b2, c2, lr, wd: (p - g * lr * np.pi, m))\n"), "bad.py:Lion",
     "optimizer: bad.py:Lion: its rule uses the number np.pi = 3.141592653589793; give it as a scalar"),
    ("a rule over the whole array", "LION".replace("LION", "LION\nimport numpy as np\nLion.rule = staticmethod("
     "lambda p, g, m, b1, c1, b2, c2, lr, wd: (p - lr * g / np.mean(np.abs(g)), m))\n"), "bad.py:Lion",
     "optimizer bad.py:Lion: its rule is not elementwise: each element's new values must depend on that element's "
     "alone (no np.mean, np.sum or np.linalg.norm over the array), one value per element"),
    ("a rule that returns a number", "LION".replace("LION", "LION\nimport numpy as np\nLion.rule = staticmethod("
     "lambda p, g, m, b1, c1, b2, c2, lr, wd: (np.sum(p - lr * g), m))\n"), "bad.py:Lion",
     "optimizer bad.py:Lion: its rule is not elementwise"),
    ("no rule", "from optrun.optim import Hyperparameters, Optimizer\nclass Lion(Optimizer):\n    class Spec("
     "Hyperparameters):\n        learning_rate: float = 0.1\n", "bad.py:Lion",
     "optimizer: bad.py:Lion: it defines no rule (a static method rule(p, g, *state, *scalars))"),
    ("no such module", None, "nomodule.rules:Lion", "optimizer: no module named 'nomodule.rules'"),
    ("unknown key", "LION", "bad.py:Lion", "optimizer.beta3: unknown key"),
    ("bad range", "LION", "bad.py:Lion", "optimizer.beta1: must be in [0, 1), got 1.5"),
    ("scalars and rule disagree", "LION".replace("LION", "LION\nLion.scalars = lambda self: {'lr': self.lr}\n"),
     "bad.py:Lion", "optimizer bad.py:Lion: scalars() gives lr; its rule takes b1, c1, b2, c2, lr, wd"),
    ("if on values", "LION".replace("LION", "LION\nLion.rule = staticmethod(lambda p, g, m, b1, c1, b2, c2, lr, wd: "
     "(p - lr if g > lr else p, m))\n"), "bad.py:Lion", "optimizer bad.py:Lion: its rule fails: ValueError: The truth "
     "value of an array with more than one element is ambiguous. Use a.any() or a.all() (a rule runs on whole "
     "arrays too: compare values with np.where or np.maximum, not if)"),
    ("rule returns too few", "LION".replace("LION", "LION\nLion.rule = staticmethod(lambda p, g, m, b1, c1, b2, c2, "
     "lr, wd: (p - g * lr,))\n"), "bad.py:Lion",
     "optimizer bad.py:Lion: its rule returns 1 value(s); it must return θ, then m"),
]  # fmt: skip


@pytest.mark.parametrize("case, source, name, message", BAD_FILES, ids=[case[0] for case in BAD_FILES])
@pytest.mark.parametrize("command", ["train", "validate"])
def test_a_bad_file_or_setting_is_one_line_and_exit_2_with_nothing_written(
    tmp_path: Path, case: str, source: str | None, name: str, message: str, command: str
) -> None:
    if source is not None:
        (tmp_path / "bad.py").write_text(source.replace("LION", LION.group(1) if LION else ""))
    extra = {"beta3": 0.5} if case == "unknown key" else {"beta1": 1.5} if case == "bad range" else {}
    config = write(tmp_path, {**SMALL, "optimizer": {"name": name, **extra}})
    args = [command, str(config)] + (["--runs-dir", str(tmp_path / "runs")] if command == "train" else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert textwrap.dedent(message.format(dir=tmp_path)) in line, line
    assert not (tmp_path / "runs").exists()


def test_a_relative_path_in_a_config_is_relative_to_the_config(rules: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir("/")
    config = load_config(write(tmp_path, {**SMALL, "optimizer": {"name": "my_rules.py:Lion"}}))
    assert config.optimizer.name == f"{rules}:Lion"
    assert config.optimizer.beta2 == 0.99  # the user's Spec, with its defaults


RAISES = EDITABLE.replace("STEP", "g").replace(
    '        return {"lr": self.lr}',
    '        if self.t == 12:\n            raise RuntimeError("boom")\n        return {"lr": self.lr}',
)


def test_an_optimizer_that_raises_in_train_ends_the_run_failed_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "raises.py").write_text(RAISES)
    config = write(tmp_path, {**SMALL, "optimizer": {"name": "raises.py:Plain"}})
    result = CliRunner().invoke(cli, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 2
    [path] = (tmp_path / "runs").iterdir()
    line = result.output.strip()
    assert line == f"Error: {path}: failed after epoch 1: RuntimeError: boom (the traceback is in {path}/traceback.txt)"
    summary = json.loads((path / "summary.json").read_text())
    assert (summary["status"], summary["reason"], summary["epochs"]) == ("failed", "RuntimeError: boom", 1)
    assert 'raise RuntimeError("boom")' in (path / "traceback.txt").read_text()
    assert not (path / "checkpoint.npz").exists()


def test_resume_refuses_an_optimizer_file_edited_since_the_run_began(rules: Path, tmp_path: Path) -> None:
    config = write(tmp_path, {**SMALL, "optimizer": {"name": "my_rules.py:Lion"}})
    result = CliRunner().invoke(cli, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    run = Path(result.output.strip())
    (run / "summary.json").unlink()  # as a run killed outright leaves it, with its checkpoint gone too
    rules.write_text(rules.read_text() + "\n# an edit\n")
    registry._import_file.cache_clear()  # as the new process that resumes it imports the file anew
    result = CliRunner().invoke(cli, ["train", "--resume", str(run)])
    assert result.exit_code == 2
    assert f"optimizer: {rules} has changed since this config recorded it (SHA-256 " in result.output
    assert result.output.strip().endswith("restore the file, or start a new run")


def test_a_users_file_imports_the_modules_beside_it(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("TWO = 2\n")
    (tmp_path / "uses.py").write_text("from helpers import TWO\n" + EDITABLE.replace("STEP", "g"))
    p = np.zeros(4)
    build_optimizer({"name": f"{tmp_path}/uses.py:Plain"}, [p]).step([np.ones(4)])
    np.testing.assert_array_equal(p, -0.5)


def test_optimizers_lists_the_valid_classes_of_a_file_and_says_what_is_wrong_with_the_others(tmp_path: Path) -> None:
    path = tmp_path / "mixed.py"
    path.write_text(EDITABLE.replace("STEP", "g") + "\n\nclass Broken(Optimizer):\n    pass\n")
    result = CliRunner().invoke(cli, ["optimizers", str(path), "--markdown"])
    assert result.exit_code == 2
    assert f"| `{path}:Plain` | `learning_rate` = 0.5 | `θ ← θ − lr·g` |" in result.output
    assert (
        result.output.strip().splitlines()[-1] == "Error: mixed.py:Broken: it has no Spec: a nested class "
        "Spec(Hyperparameters) with its keys and learning_rate's default"
    )


def test_a_process_runs_the_file_it_imported_at_every_size_even_once_the_file_is_edited(tmp_path, monkeypatch) -> None:
    """The kernel is compiled from the text the process imported, and cached under that text's hash: an edit
    made while a process runs changes neither its numpy steps nor its compiled ones, nor the kernel that a
    later process (which imports the edited file) finds in the cache."""
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "while_running.py"
    path.write_text(EDITABLE.replace("STEP", "g"))
    small, large = np.zeros(1000, np.float32), np.zeros(200_000, np.float32)
    build_optimizer({"name": f"{path}:Plain"}, [small]).step([np.ones_like(small)])
    path.write_text(EDITABLE.replace("STEP", "(g + g)"))
    opt = build_optimizer({"name": f"{path}:Plain"}, [large])
    opt.step([np.ones_like(large)])
    assert opt.fused and small.min() == small.max() == large.min() == large.max() == -0.5
    done = subprocess.run([sys.executable, "-c", STEP_BOTH_SIZES, f"{path}:Plain"], capture_output=True, text=True,
                          env={**os.environ}, timeout=120)  # fmt: skip
    assert done.stdout.split() == ["1000", "False", "-1.0", "-1.0", "200000", "True", "-1.0", "-1.0"], done.stderr


@pytest.mark.parametrize("size", [1000, 200_000])
def test_a_flag_that_changes_between_steps_stops_the_run(tmp_path: Path, size: int) -> None:
    """At every size: numpy's steps refuse it as the kernel, which has the flag as a constant, must."""
    path = tmp_path / "flag.py"
    source = EDITABLE.replace("STEP", "g").replace("def rule(p, g, lr):", "def rule(p, g, lr, early):")
    path.write_text(source.replace('return {"lr": self.lr}', 'return {"lr": self.lr, "early": self.t < 3}'))
    p = np.zeros(size, np.float32)
    opt = build_optimizer({"name": f"{path}:Plain"}, [p])
    assert opt.fused == (size == 200_000)
    opt.step([np.ones_like(p)])
    opt.step([np.ones_like(p)])
    with pytest.raises(ValueError, match=r"flag\.py:Plain: scalars\(\) changed its flags from \{'early': True\} to "
                       r"\{'early': False\} at step 3; a flag \(a bool\) must be the same at every step"):  # fmt: skip
        opt.step([np.ones_like(p)])


def test_a_worker_refuses_a_file_that_differs_from_the_one_the_config_recorded(rules: Path) -> None:
    import pickle

    from optrun.compare import execute

    config = parse_config({**SMALL, "optimizer": {"name": f"{rules}:Lion"}})
    sent = pickle.dumps(config.optimizer)  # as a worker receives it
    assert pickle.loads(sent) == config.optimizer
    rules.write_text(rules.read_text().replace("1e-4", "2e-4"))
    registry._import_file.cache_clear()  # as a worker that has not imported it yet
    with pytest.raises(Exception, match="has changed since this config recorded it"):
        pickle.loads(sent)
    # a comparison's worker is sent the config's mapping, and fails the run rather than dying
    finished = execute(pickle.loads(pickle.dumps(config.to_dict())))
    assert finished.result.status == "failed" and "has changed since this config recorded it" in finished.result.reason


def test_float64_gradients_of_float32_parameters_give_the_same_bits_both_ways() -> None:
    """Separate float32 arrays (no flat buffer), float64 gradients: both paths compute in float32."""
    rng = np.random.default_rng(0)
    start, grads = rng.standard_normal(FUSED_MIN_SIZE).astype(np.float32), rng.standard_normal((5, FUSED_MIN_SIZE))
    results = []
    for fused in (False, True):
        params = [start[:50_000].copy(), start[50_000:].copy()]
        opt = build_optimizer({"name": "adam"}, params)
        opt.fused = fused
        for g in grads:
            opt.step([g[:50_000], g[50_000:]])
        results.append(np.concatenate(params))
    np.testing.assert_array_equal(results[0], results[1])
