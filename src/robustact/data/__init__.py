"""Dataset readers: every dataset is an in-memory :class:`ImageDataset` of (N, C, H, W) images.

``load_dataset(name, root=None, split="train", **kw)`` reads a registered dataset;
``list_datasets()`` names them. Readers never touch the network unless ``download=True``.
"""

from robustact.data import cifar as _cifar  # noqa: F401  (registers cifar10/100)
from robustact.data import digits as _digits  # noqa: F401  (registers "digits")
from robustact.data import idx as _idx  # noqa: F401  (registers the MNIST family)
from robustact.data import imagefolder as _imagefolder  # noqa: F401  (registers "imagefolder")
from robustact.data import svhn as _svhn  # noqa: F401  (registers "svhn")
from robustact.data import tinyimagenet as _tin  # noqa: F401  (registers "tinyimagenet")
from robustact.data.base import (
    DATASETS,
    DatasetError,
    ImageDataset,
    list_datasets,
    load_dataset,
)
from robustact.data.download import RESOURCES, md5sum
from robustact.data.generated import append_generated, read_generated
from robustact.data.idx import read_idx
from robustact.data.safe_pickle import SafeUnpickler, UnsafePickleError, safe_load
from robustact.data.splits import BatchLoader, make_loader, stratified_indices, train_val_split

__all__ = [
    "DATASETS",
    "RESOURCES",
    "BatchLoader",
    "DatasetError",
    "ImageDataset",
    "SafeUnpickler",
    "UnsafePickleError",
    "append_generated",
    "list_datasets",
    "load_dataset",
    "make_loader",
    "md5sum",
    "read_generated",
    "read_idx",
    "safe_load",
    "stratified_indices",
    "train_val_split",
]
