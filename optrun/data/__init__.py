"""Datasets: synthetic generators and the shipped digits set, split and standardized."""

from optrun.data.dataset import GENERATORS, Dataset, DatasetSpec, load_dataset, standardize, stratified_split

DATASETS = tuple(GENERATORS)

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "load_dataset", "standardize", "stratified_split"]
