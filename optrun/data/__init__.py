"""Datasets: real sets read from files, generated sets, the user's own files; split and standardized."""

from optrun.data.dataset import (
    GENERATORS,
    Dataset,
    DatasetSpec,
    check_every_class,
    grid,
    load_dataset,
    standardize,
    stratified_split,
)

DATASETS = tuple(GENERATORS)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "check_every_class",
    "grid",
    "load_dataset",
    "standardize",
    "stratified_split",
]
