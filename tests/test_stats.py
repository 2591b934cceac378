"""Statistics over seeds, checked against figures worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from optrun.config import parse_config
from optrun.problems import NETWORK, EpochRecord
from optrun.runs import RunRecord
from optrun.stats import Group, comparison_target, curves, ranked


def run(seed: int, accuracies: list[float], losses: list[float], status: str = "completed", name: str = "sgd"):
    rows = [
        EpochRecord(epoch, loss, 0.0, 0.0, acc, 0.1, 0.0 if epoch == 0 else 0.5 + seed)
        for epoch, (acc, loss) in enumerate(zip(accuracies, losses, strict=True))
    ]
    config = {"name": name, "seed": seed, "optimizer": {"name": name, "learning_rate": 0.1}}
    return RunRecord(Path(f"seed-{seed}"), config, {"status": status}, rows)


def group(*runs: RunRecord, label: str = "sgd") -> Group:
    return Group(label, list(runs), Path("cmp"))


def test_mean_sd_best_and_epochs_to_target_by_hand() -> None:
    g = group(
        run(0, [0.1, 0.6, 0.8, 0.9], [2.0, 1.0, 0.5, 0.25]),
        run(1, [0.1, 0.4, 0.9, 0.8], [2.0, 1.5, 0.5, 0.35]),
    )
    s = NETWORK.stats(g, curves(g), 0.7)
    # final accuracies 0.9 and 0.8: mean 0.85; sample sd sqrt((0.05² + 0.05²) / 1) = 0.05·√2
    assert s.final_test_accuracy_mean == pytest.approx(0.85, abs=1e-15)
    assert s.final_test_accuracy_std == pytest.approx(0.05 * math.sqrt(2), abs=1e-15)
    assert s.final_train_loss_mean == pytest.approx(0.3, abs=1e-15)
    assert s.final_train_loss_std == pytest.approx(0.05 * math.sqrt(2), abs=1e-15)
    # the mean curve is 0.1, 0.5, 0.85, 0.85: best 0.85 first reached at epoch 2, 0.7 first reached at epoch 2
    assert (s.best_test_accuracy, s.best_epoch) == (pytest.approx(0.85), 2)
    assert s.epochs_to_target == 2
    assert s.seconds_to_target == pytest.approx((2 * 0.5 + 2 * 1.5) / 2)  # two epochs of each seed
    assert s.best_chosen_on == "test_accuracy"  # no validation split: read off the test curve, and said so
    assert NETWORK.stats(g, curves(g), 0.86).epochs_to_target is None
    # seconds: seed 0 trains 0.5 s per epoch, seed 1 1.5 s: mean 1.0 over the six trained epochs
    assert s.seconds_per_epoch == pytest.approx(1.0)
    assert (s.seeds, s.diverged, s.failed, s.optimizer, s.learning_rate) == (2, 0, 0, "sgd", 0.1)
    assert s.hyperparameters == "learning_rate=0.1"


def test_diverged_runs_are_counted_not_averaged() -> None:
    nan = math.nan
    g = group(
        run(0, [0.1, 0.5, 0.7], [2.0, 1.0, 0.5]),
        run(1, [0.1, 0.3, nan], [2.0, 9.0, nan], status="diverged"),
        run(2, [0.1], [2.0], status="failed"),
    )
    s = NETWORK.stats(g, curves(g), 0.6)
    assert s.final_test_accuracy_mean == 0.7 and s.final_test_accuracy_std is None  # one completed seed: no sd
    assert (s.seeds, s.diverged, s.failed, s.epochs_to_target) == (3, 1, 1, 2)
    c = curves(g)
    assert c is not None and c["test_accuracy"].shape == (1, 3)


def test_a_label_whose_every_seed_diverged_has_no_figures_and_ranks_last() -> None:
    bad = group(run(0, [0.1, 0.2], [2.0, math.inf], status="diverged"), label="wild")
    good = group(run(0, [0.1, 0.9], [2.0, 0.1]), label="calm")
    worse = group(run(0, [0.1, 0.8], [2.0, 0.2]), label="slow")
    assert curves(bad) is None
    rows = ranked([bad, worse, good], comparison_target([bad, worse, good])[0])
    assert [r.label for r in rows] == ["calm", "slow", "wild"]
    assert rows[2].final_test_accuracy_mean is None and rows[2].diverged == 1
    assert rows[0].target_accuracy == pytest.approx(0.95 * 0.9)


def test_equal_accuracies_rank_by_train_loss() -> None:
    # 0.1 + 0.2 is not 0.3 in floating point; accuracies equal but for rounding must rank as ties
    low_loss = group(run(0, [0.1, 0.1 + 0.2], [1.0, 0.1]), run(1, [0.1, 0.3], [1.0, 0.1]), label="low")
    high_loss = group(run(0, [0.1, 0.3], [1.0, 0.5]), run(1, [0.1, 0.3], [1.0, 0.5]), label="high")
    assert (
        NETWORK.stats(low_loss, curves(low_loss), None).final_test_accuracy_mean
        != NETWORK.stats(high_loss, curves(high_loss), None).final_test_accuracy_mean
    )
    assert [r.label for r in ranked([high_loss, low_loss], None)] == ["low", "high"]


def test_no_completed_run_gives_no_default_target() -> None:
    assert comparison_target([group(run(0, [0.1], [2.0], status="failed"))])[0] is None


def test_the_best_epoch_is_chosen_on_the_validation_curve_where_there_is_one() -> None:
    """Validation peaks at epoch 1, test at epoch 3: the best epoch is 1, and its figure the test accuracy there."""

    def with_validation(seed: int, test: list[float], validation: list[float]) -> RunRecord:
        rows = [
            EpochRecord(e, 1.0, 0.0, 0.0, t, 0.1, 0.5, validation_loss=1.0, validation_accuracy=v)
            for e, (t, v) in enumerate(zip(test, validation, strict=True))
        ]
        return RunRecord(
            Path(f"seed-{seed}"), {"seed": seed, "optimizer": {"name": "sgd"}}, {"status": "completed"}, rows
        )

    g = group(
        with_validation(0, [0.1, 0.6, 0.7, 0.9], [0.1, 0.8, 0.7, 0.6]),
        with_validation(1, [0.1, 0.4, 0.8, 0.8], [0.1, 0.9, 0.8, 0.7]),
    )
    s = NETWORK.stats(g, curves(g), None)
    assert (s.best_epoch, s.best_test_accuracy, s.best_chosen_on) == (1, pytest.approx(0.5), "validation_accuracy")
    config = parse_config({"dataset": {"name": "digits", "validation_fraction": 0.1}, "optimizer": {"name": "sgd"}})
    best = NETWORK.summary(config, g.runs[0].records)["best"]
    assert best == {"test_accuracy": 0.6, "epoch": 1, "chosen_on": "validation_accuracy"}
    assert "best epoch on validation: 1, test accuracy 60.00%" in NETWORK.result(
        NETWORK.summary(config, g.runs[0].records)
    )
