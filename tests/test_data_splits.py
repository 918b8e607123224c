"""digits (the embedded default), stratified seeded splits and the seeded batch loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from robustact.data import (
    BatchLoader,
    DatasetError,
    ImageDataset,
    list_datasets,
    load_dataset,
    make_loader,
    train_val_split,
)


def test_digits_shapes_range_and_fixed_split():
    tr = load_dataset("digits")
    te = load_dataset("digits", split="test")
    assert (len(tr), len(te)) == (1438, 359)
    assert tr.input_shape == (1, 8, 8) and tr.num_classes == 10 and tr.name == "digits"
    x, y = tr.tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # Values are k/16: scaled from the 0..16 originals.
    assert torch.equal(x * 16, (x * 16).round())
    # Stratified: every class is 19-21% test.
    share = torch.tensor(te.class_counts()) / torch.tensor(
        load_dataset("digits", split="all").class_counts()
    )
    assert bool(((share > 0.19) & (share < 0.21)).all())
    # Fixed split: disjoint, together all 1797 images, same every call.
    from sklearn.datasets import load_digits

    raw = torch.from_numpy(load_digits().images).float() / 16
    whole = torch.cat([tr.images[:, 0], te.images[:, 0]])
    assert whole.shape == (1797, 8, 8)
    assert torch.allclose(whole.sum(0), raw.sum(0), atol=1e-4)
    assert torch.equal(load_dataset("digits").images, tr.images)


def test_digits_upscaled():
    ds = load_dataset("digits", split="test", size=28)
    x, _ = ds.tensors()
    assert x.shape == (359, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    small = load_dataset("digits", split="test").tensors()[0]
    # Bilinear upscaling keeps the mean brightness of each image to within a few percent.
    assert torch.allclose(x.mean((1, 2, 3)), small.mean((1, 2, 3)), atol=0.02)
    with pytest.raises(DatasetError, match="size must be an integer >= 1"):
        load_dataset("digits", size=0)


def test_digits_cache_is_not_corrupted_by_callers():
    ds = load_dataset("digits")
    ds.images.zero_()
    assert float(load_dataset("digits").images.max()) == 1.0


def test_registry_lists_core_datasets():
    names = list_datasets()
    for n in ("digits", "mnist", "fashion_mnist", "fmnist", "kmnist", "emnist", "mnist_t10k"):
        assert n in names


def _toy(n_per_class=(50, 30, 20)) -> ImageDataset:
    y = torch.cat([torch.full((k,), c) for c, k in enumerate(n_per_class)])
    x = torch.arange(len(y), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return ImageDataset(x, y, ["a", "b", "c"], "toy")


def test_train_val_split_stratified_seeded_disjoint():
    ds = _toy()
    tr, va = train_val_split(ds, 0.2, seed=3)
    assert va.class_counts() == [10, 6, 4] and tr.class_counts() == [40, 24, 16]
    ids_tr = set(tr.images[:, 0, 0, 0].tolist())
    ids_va = set(va.images[:, 0, 0, 0].tolist())
    assert not ids_tr & ids_va and len(ids_tr | ids_va) == 100
    _, va2 = train_val_split(ds, 0.2, seed=3)
    assert torch.equal(va.images, va2.images)
    _, va3 = train_val_split(ds, 0.2, seed=4)
    assert not torch.equal(va.images, va3.images)
    # Labels still match their images after the split.
    assert torch.equal(va.labels, ds.labels[va.images[:, 0, 0, 0].long()])
    with pytest.raises(DatasetError, match="val_fraction must be a finite number in"):
        train_val_split(ds, 1.0)


def test_subset_and_getitem():
    ds = _toy()
    sub = ds.subset([5, 99, 0])
    assert sub.images[:, 0, 0, 0].tolist() == [5, 99, 0] and sub.labels.tolist() == [0, 2, 0]
    img, lab = sub[1]
    assert torch.allclose(img, torch.full((1, 2, 2), 99 / 255)) and lab.item() == 2
    assert sub.images.dtype == torch.uint8
    with pytest.raises(IndexError):
        ds.subset([100])


def test_loader_seeded_each_image_once():
    ds = _toy()
    a = make_loader(ds, 32, shuffle=True, seed=7)
    b = make_loader(ds, 32, shuffle=True, seed=7)
    assert isinstance(a, BatchLoader) and len(a) == 4
    ep_a = [x for x, _ in a]
    ep_b = [x for x, _ in b]
    assert all(torch.equal(p, q) for p, q in zip(ep_a, ep_b, strict=True))
    ids = torch.cat([x[:, 0, 0, 0] for x in ep_a]).mul(255).round().long()
    assert sorted(ids.tolist()) == list(range(100))  # every image exactly once
    ids2 = torch.cat([x[:, 0, 0, 0] for x, _ in a]).mul(255).round().long()
    assert sorted(ids2.tolist()) == list(range(100)) and not torch.equal(ids, ids2)
    for x, y in make_loader(ds, 32, shuffle=False):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(y, ds.labels[(x[:, 0, 0, 0] * 255).round().long()])
    dl = make_loader(ds, 32, drop_last=True)
    assert len(dl) == 3 and sum(len(y) for _, y in dl) == 96


def test_loader_generic_dataset_is_seeded():
    td = TensorDataset(torch.arange(10.0), torch.arange(10))
    a = [y.tolist() for _, y in make_loader(td, 4, seed=1)]
    b = [y.tolist() for _, y in make_loader(td, 4, seed=1)]
    assert a == b and sorted(i for batch in a for i in batch) == list(range(10))


def test_imagedataset_validates():
    with pytest.raises(DatasetError, match="3 images but 2 labels"):
        ImageDataset(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(2), ["a"], "t")
    with pytest.raises(DatasetError, match="must be uint8 or float32"):
        ImageDataset(torch.zeros(3, 1, 2, 2, dtype=torch.bool), torch.zeros(3), ["a"], "t")
    with pytest.raises(DatasetError, match=r"must hold 0\.\.255 pixel values"):
        ImageDataset(torch.full((3, 1, 2, 2), 300, dtype=torch.int32), torch.zeros(3), ["a"], "t")
    with pytest.raises(DatasetError, match=r"must be \(N, C, H, W\)"):
        ImageDataset(torch.zeros(3, 2, 2), torch.zeros(3), ["a"], "t")
    assert np.isclose(float(_toy().tensors()[0].max()), 99 / 255)
