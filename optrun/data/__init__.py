"""Datasets: synthetic generators and the shipped digits set, split and standardized."""

from optrun.data.dataset import (
    GENERATORS,
    Dataset,
    DatasetSpec,
    check_every_class,
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
    "load_dataset",
    "standardize",
    "stratified_split",
]
