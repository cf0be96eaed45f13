"""Named datasets, deterministic splits and scaling, and the shared cache.

Every dataset is either bundled with scikit-learn (``digits``, ``iris``,
``wine``, ``breast_cancer``, ``diabetes``) or generated from a seed
(``classification``, ``moons``, ``regression``). Nothing is ever downloaded.

Importing this package imports NumPy only: scikit-learn (and SciPy with it)
costs ~2 s and ~140 MB per interpreter, so it is imported inside the functions
that build data. :func:`prepare_splits` (the sweep's parent) writes split,
scaled data once to an on-disk cache of ``.npy`` files; :func:`load_splits`
(every worker) memory-maps them read-only.
"""

from ._cache import cache_dir, load_splits, prepare_splits
from ._datasets import DATASETS, Dataset, Splits, load_dataset, make_splits

__all__ = [
    "DATASETS",
    "Dataset",
    "Splits",
    "cache_dir",
    "load_dataset",
    "load_splits",
    "make_splits",
    "prepare_splits",
]
