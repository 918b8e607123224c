"""IDX readers (MNIST family, EMNIST transposition, mnist-t10k) on tiny fixtures and the
shared MNIST test split."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from robustact.data import DatasetError, load_dataset, md5sum, read_idx

# Sums of the uint8 pixels of mnist-t10k (computed once from the official t10k file).
TRAIN_PIXEL_SUM = 208058241
TEST_PIXEL_SUM = 56864959


def _idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def _fixture(root: Path, folder: str, prefix: str, part: str, n: int, gz: bool, classes: int = 10):
    rng = np.random.default_rng(n)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = (np.arange(n) % classes).astype(np.uint8)
    raw = root / folder / "raw"
    _write(raw / f"{prefix}{part}-images-idx3-ubyte", _idx_bytes(x), gz)
    _write(raw / f"{prefix}{part}-labels-idx1-ubyte", _idx_bytes(y), gz)
    return x, y


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fmnist", "FashionMNIST"), ("kmnist", "KMNIST")]
)
def test_mnist_family_reads_exact_pixels_and_labels(tmp_path: Path, gz: bool, name, folder):
    x, y = _fixture(tmp_path, folder, "", "train", 7, gz)
    xt, _ = _fixture(tmp_path, folder, "", "t10k", 3, gz)
    ds = load_dataset(name, root=tmp_path)
    assert len(ds) == 7 and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    img, lab = ds[4]
    assert img.dtype == torch.float32 and img.shape == (1, 28, 28)
    assert torch.equal(img[0], torch.from_numpy(x[4]).float() / 255)
    assert lab.dtype == torch.int64 and lab.ndim == 0 and int(lab) == 4
    xs, ys = ds.tensors()
    assert xs.shape == (7, 1, 28, 28) and ys.tolist() == y.tolist()
    assert ds.images.dtype == torch.uint8  # stored compactly
    test = load_dataset(name, root=tmp_path, split="test")
    assert torch.equal(test.images[:, 0], torch.from_numpy(xt)) and test.labels.tolist() == [
        0,
        1,
        2,
    ]


def test_emnist_byclass_is_transposed(tmp_path: Path):
    x = np.zeros((2, 28, 28), np.uint8)
    x[0, 3, 20] = 200  # row 3, column 20 in the file -> row 20, column 3 in the image
    x[1, 0, :] = 255
    y = np.array([61, 35], np.uint8)  # 'z' and 'Z'
    raw = tmp_path / "EMNIST" / "raw"
    _write(raw / "emnist-byclass-train-images-idx3-ubyte", _idx_bytes(x), True)
    _write(raw / "emnist-byclass-train-labels-idx1-ubyte", _idx_bytes(y), False)
    ds = load_dataset("emnist", root=tmp_path)
    assert ds.num_classes == 62 and ds.classes[61] == "z" and ds.classes[35] == "Z"
    assert ds.images[0, 0, 20, 3] == 200 and ds.images[0, 0, 3, 20] == 0
    assert ds.images[1, 0, :, 0].tolist() == [255] * 28 and ds.images[1, 0, 0, 1:].sum() == 0
    assert ds.labels.tolist() == [61, 35]


def test_missing_files_one_line_error(tmp_path: Path):
    with pytest.raises(DatasetError) as e:
        load_dataset("kmnist", root=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "'kmnist'" in msg and "train-images-idx3-ubyte" in msg
    assert str(tmp_path / "KMNIST" / "raw") in msg and "download=True" in msg


def test_corrupt_gzip(tmp_path: Path):
    _fixture(tmp_path, "MNIST", "", "train", 5, True)
    p = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:30])  # truncated gzip stream
    with pytest.raises(DatasetError, match="corrupt or truncated gzip"):
        load_dataset("mnist", root=tmp_path)
    p.write_bytes(b"not a gzip at all")
    with pytest.raises(DatasetError, match="not a gzip file"):
        load_dataset("mnist", root=tmp_path)


def test_truncated_payload(tmp_path: Path):
    _fixture(tmp_path, "MNIST", "", "train", 5, False)
    p = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="payload is 3910 bytes but the header"):
        load_dataset("mnist", root=tmp_path)


def test_bad_magic(tmp_path: Path):
    _fixture(tmp_path, "MNIST", "", "train", 5, False)
    p = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    p.write_bytes(b"\x12\x34\x08\x01" + p.read_bytes()[4:])
    with pytest.raises(DatasetError, match="bad IDX magic number 12340801"):
        load_dataset("mnist", root=tmp_path)
    # Image and label files swapped: the dimension count gives it away.
    lab = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    img = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    lab.write_bytes(img.read_bytes())
    with pytest.raises(DatasetError, match="3 dimensions, expected 1"):
        load_dataset("mnist", root=tmp_path)


def test_count_mismatch(tmp_path: Path):
    _fixture(tmp_path, "MNIST", "", "train", 5, False)
    raw = tmp_path / "MNIST" / "raw"
    _write(raw / "train-labels-idx1-ubyte", _idx_bytes(np.zeros(4, np.uint8)), False)
    with pytest.raises(DatasetError, match="5 images but train-labels-idx1-ubyte has 4 labels"):
        load_dataset("mnist", root=tmp_path)


def test_label_out_of_range(tmp_path: Path):
    _fixture(tmp_path, "MNIST", "", "train", 12, False, classes=12)
    with pytest.raises(DatasetError, match=r"labels span 0\.\.11 but there are 10 classes"):
        load_dataset("mnist", root=tmp_path)


def test_read_idx_roundtrip_plain_and_gz(tmp_path: Path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (False, True):
        p = _write(tmp_path / f"a{gz}", _idx_bytes(a), gz)
        got = read_idx(p, ndim=3)
        assert got.flags.writeable and np.array_equal(got, a)


def test_unknown_split_and_name(tmp_path: Path):
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        load_dataset("mnist", root=tmp_path, split="val")
    with pytest.raises(ValueError, match="Did you mean 'mnist'"):
        load_dataset("mnsit")


def test_mnist_t10k_from_fixture(tmp_path: Path):
    x, y = _fixture(tmp_path, "MNIST", "", "t10k", 10000, True)
    tr = load_dataset("mnist-t10k", root=tmp_path)
    te = load_dataset("mnist-t10k", root=tmp_path, split="test")
    assert len(tr) == 8000 and len(te) == 2000
    assert torch.equal(te.images[0, 0], torch.from_numpy(x[8000]))
    assert te.labels[-1] == int(y[-1])


def test_default_root_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _fixture(tmp_path, "MNIST", "", "t10k", 10000, False)
    monkeypatch.setenv("ROBUSTACT_DATA", str(tmp_path))
    assert len(load_dataset("mnist_t10k", split="test")) == 2000


@pytest.mark.mnist
def test_shared_mnist_split(shared_datasets: Path):
    raw = shared_datasets / "MNIST" / "raw"
    assert md5sum(raw / "t10k-images-idx3-ubyte.gz") == "9fb629c4189551a2d022fa330f9573f3"
    assert md5sum(raw / "t10k-labels-idx1-ubyte.gz") == "ec29112dd5afa0611ce80d1b7f02629c"
    tr = load_dataset("mnist-t10k", root=shared_datasets)
    te = load_dataset("mnist-t10k", root=shared_datasets, split="test")
    assert tr.class_counts() == [773, 905, 834, 803, 788, 723, 756, 813, 787, 818]
    assert te.class_counts() == [207, 230, 198, 207, 194, 169, 202, 215, 187, 191]
    full = [a + b for a, b in zip(tr.class_counts(), te.class_counts(), strict=True)]
    assert full == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x, y = te.tensors()
    assert x.shape == (2000, 1, 28, 28) and x.min() == 0 and x.max() == 1
    assert y[:5].tolist() == [4, 9, 9, 7, 1]
    assert int(te.images.long().sum()) == TEST_PIXEL_SUM
    assert int(tr.images.long().sum()) == TRAIN_PIXEL_SUM
    # The first test image of MNIST is a 7.
    assert int(tr.labels[0]) == 7 and tr.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_default_root_cwd_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # ../shared/datasets relative to the working directory is searched before the repository's.
    x, _ = _fixture(tmp_path / "shared" / "datasets", "MNIST", "", "t10k", 10000, True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv("ROBUSTACT_DATA", raising=False)
    te = load_dataset("mnist_t10k", split="test")
    assert torch.equal(te.images[:, 0], torch.from_numpy(x[8000:]))


def test_root_may_be_the_raw_folder_itself(tmp_path: Path):
    x, _ = _fixture(tmp_path, "MNIST", "", "train", 3, False)
    ds = load_dataset("mnist", root=tmp_path / "MNIST" / "raw")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x))


def test_emnist_variant_in_gzip_subfolder(tmp_path: Path):
    # The official EMNIST zip unpacks to gzip/emnist-<variant>-*.gz.
    x = np.random.default_rng(4).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    y = np.array([3, 1, 4, 1], np.uint8)
    gz = tmp_path / "EMNIST" / "raw" / "gzip"
    _write(gz / "emnist-digits-test-images-idx3-ubyte", _idx_bytes(x), True)
    _write(gz / "emnist-digits-test-labels-idx1-ubyte", _idx_bytes(y), True)
    ds = load_dataset("emnist", root=tmp_path, split="test", variant="digits")
    assert ds.num_classes == 10 and ds.labels.tolist() == y.tolist()
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x).transpose(1, 2))
    with pytest.raises(DatasetError, match="unknown variant 'bytes'"):
        load_dataset("emnist", root=tmp_path, variant="bytes")
