"""autoemb: AutoEmb (Zhao et al., 2020) and its baselines on streaming recommendation data."""
from .data import dataset_names, load_dataset
from .interactions import DataError, Interactions, binary_label, class_label

_STREAM = ("Batches", "make_batches", "popularity_before_batch", "sample_validation")


def __getattr__(name):
    """The stream utilities, imported (with torch) on first use: ``python -m autoemb_core --help`` needs none."""
    if name in _STREAM:
        from . import stream
        return getattr(stream, name)
    raise AttributeError(f"module 'autoemb_core' has no attribute {name!r}")

__version__ = "0.1.0"
__all__ = ["DataError", "Interactions", "Batches", "binary_label", "class_label", "dataset_names",
           "load_dataset", "make_batches", "popularity_before_batch", "sample_validation"]
