"""Datasets: determinism, stratified splits, standardization with train statistics only."""

from __future__ import annotations

import hashlib
from importlib.resources import files

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from optrun.data import DatasetSpec, load_dataset, stratified_split
from optrun.data.dataset import GENERATORS, first_of_each_class
from optrun.schema import ConfigError

SPEC = TypeAdapter(DatasetSpec)


def load(spec: dict, seed: int = 0, dtype: str = "float32"):
    return load_dataset(SPEC.validate_python(spec), np.random.default_rng(seed), dtype)


def test_shipped_digits_file_is_the_documented_copy() -> None:
    data = files("optrun.data").joinpath("digits.csv.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
    ds = load({"name": "digits", "test_fraction": 0.25})
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert ds.n_features == 64 and ds.n_classes == 10
    assert len(ds.y_test) == pytest.approx(0.25 * 1797, abs=10)


SPLIT_BY_SEED = [
    name
    for name, (spec, _) in GENERATORS.items()
    if "test_fraction" in spec.model_fields
    and not any(field.is_required() for key, field in spec.model_fields.items() if key != "name")
]
"""The sets optrun makes and splits from the seed with no file of the user's (MNIST's keep their own split:
tests/test_idx.py; a user's CSV and NPZ: tests/test_user_data.py)."""


@pytest.mark.parametrize("name", SPLIT_BY_SEED)
def test_datasets_are_deterministic_typed_and_standardized_on_train(name: str) -> None:
    a, b, c = load({"name": name}, 3), load({"name": name}, 3), load({"name": name}, 4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype.kind == "i"
    assert set(np.unique(a.y_train)) == set(range(a.n_classes))
    varying = a.x_train.std(axis=0) > 0
    np.testing.assert_allclose(a.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(a.x_train.std(axis=0)[varying], 1, rtol=1e-4)
    # The test split is transformed with the train statistics, so its own are not exactly 0 and 1.
    assert np.abs(a.x_test.mean(axis=0)).max() > 1e-4


def test_float64_dataset_matches_float32_up_to_rounding() -> None:
    a, b = load({"name": "moons"}, dtype="float64"), load({"name": "moons"}, dtype="float32")
    assert a.x_train.dtype == np.float64
    np.testing.assert_allclose(a.x_train, b.x_train, rtol=1e-5, atol=1e-6)


def test_blobs_has_the_requested_shape() -> None:
    ds = load({"name": "blobs", "n_samples": 500, "n_features": 30, "n_classes": 5})
    assert ds.n_features == 30 and ds.n_classes == 5 and len(ds.y_train) + len(ds.y_test) == 500


def test_spirals_arms() -> None:
    ds = load({"name": "spirals", "n_classes": 5, "n_samples": 500})
    assert ds.n_classes == 5 and np.all(np.bincount(ds.y_test) == 20)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(2, 60), min_size=2, max_size=8),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_split_partitions_every_class_in_proportion(counts, fraction, seed) -> None:
    y = np.repeat(np.arange(len(counts)), counts)
    train, test = stratified_split(y, fraction, np.random.default_rng(seed))
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(y)))
    per_class_test = np.bincount(y[test], minlength=len(counts))
    np.testing.assert_array_equal(per_class_test, np.rint(np.array(counts) * fraction))


@settings(max_examples=80, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=1, max_size=8).filter(any),
    n=st.integers(1, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_subsample_takes_each_class_in_proportion_and_keeps_the_order(counts, n, seed) -> None:
    """train.max_samples: the first samples of each class, every class present while n lasts, the rest
    shared in proportion (largest remainders: within one of n·count/total beyond the first)."""
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    kept = first_of_each_class(y, n, len(counts))
    assert len(kept) == min(n, len(y)) and np.all(np.diff(kept) > 0)
    got, counts = np.bincount(y[kept], minlength=len(counts)), np.array(counts)
    for c in range(len(counts)):  # the first got[c] samples of class c, no other
        assert np.array_equal(kept[y[kept] == c], np.flatnonzero(y == c)[: got[c]])
    present = np.flatnonzero(counts)
    if n >= len(present):
        assert np.all(got[present] >= 1)
        if n < len(y):
            share = (counts[present] - 1) * (n - len(present)) / (len(y) - len(present))
            assert np.all(np.abs(got[present] - 1 - share) < 1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (  # 300 moons of each class: round(0.999 · 300) = 300 in test
            {"name": "moons", "test_fraction": 0.999},
            "dataset.test_fraction: 0.999 of 600 samples leaves class 0 with 0 training and 300 test samples "
            "(1 other class too); every class needs at least one training and one test sample",
        ),
        (  # 4 of each class: round(0.1 · 4) = 0 in test
            {"name": "moons", "n_samples": 8, "test_fraction": 0.1},
            "dataset.test_fraction: 0.1 of 8 samples leaves class 0 with 4 training and 0 test samples (1 other",
        ),
        (  # 6 of each class: round(0.1 · 6) = 1 in test, except for the 5 of class 2: round(0.5) = 0
            {"name": "spirals", "n_samples": 17, "n_classes": 3, "test_fraction": 0.1},
            "dataset.test_fraction: 0.1 of 17 samples leaves class 2 with 5 training and 0 test samples; every",
        ),
    ],
)
def test_a_split_that_leaves_a_class_without_training_or_test_samples_is_refused(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(spec)
    assert str(refused.value).startswith(message)


def test_mnist1d_is_made_by_its_package_once_then_read_from_the_cache(tmp_path, monkeypatch) -> None:
    """Its generator's default arguments: 4,000 train and 1,000 test signals of 40 points, 10 classes, 500
    of each in all; numpy's and Python's global generators, which it seeds, are left as they were."""
    import random

    from optrun.data import mnist1d

    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path))
    np.random.seed(7)
    random.seed(7)
    before = (np.random.get_state()[1].copy(), random.getstate())
    made = mnist1d.mnist1d(mnist1d.Mnist1dSpec(name="mnist1d"), np.random.default_rng(0), np.dtype(np.float32))
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    assert made.x_train.shape == (4000, 40) and made.x_test.shape == (1000, 40)
    assert np.bincount(np.concatenate([made.y_train, made.y_test])).tolist() == [500] * 10
    assert mnist1d.cache_file().is_file()
    monkeypatch.setattr(mnist1d, "_made", lambda: pytest.fail("made again, not read from the cache"))
    again = load({"name": "mnist1d"})
    assert (len(again.y_train), len(again.y_test), again.n_features, again.n_classes) == (4000, 1000, 40, 10)
    assert np.array_equal(np.sort(again.y_test), np.sort(made.y_test))  # its own split
    np.savez(mnist1d.cache_file(), x_train=made.x_train[:10], y_train=made.y_train[:10], x_test=made.x_test,
             y_test=made.y_test)  # fmt: skip
    monkeypatch.setattr(mnist1d, "_made", lambda: made)  # a cache of the wrong shape is made again
    remade = mnist1d.mnist1d(mnist1d.Mnist1dSpec(name="mnist1d"), np.random.default_rng(0), np.dtype("f4"))
    assert len(remade.y_train) == 4000
