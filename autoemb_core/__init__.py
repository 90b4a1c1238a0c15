"""autoemb: AutoEmb (Zhao et al., 2020) and its baselines on streaming recommendation data."""
from .data import dataset_names, load_dataset
from .interactions import DataError, Interactions, binary_label, class_label
from .stream import Batches, make_batches, popularity_before_batch, sample_validation

__version__ = "0.1.0"
__all__ = ["DataError", "Interactions", "Batches", "binary_label", "class_label", "dataset_names",
           "load_dataset", "make_batches", "popularity_before_batch", "sample_validation"]
