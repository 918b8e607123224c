"""CIFAR pickles (restricted unpickler), SVHN .mat, TinyImageNet folders and downloads."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from robustact.data import DatasetError, SafeUnpickler, UnsafePickleError, load_dataset, safe_load
from robustact.data import download as dl

# ---------------------------------------------------------------- pickles as Python 2 wrote them


def _s(b: bytes) -> bytes:
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(b)) + b  # BINSTRING


def _i(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)  # BININT


def _val(v: object) -> bytes:
    if isinstance(v, bytes):
        return _s(v)
    if isinstance(v, int):
        return _i(v)
    if isinstance(v, list):
        return b"](" + b"".join(_val(i) for i in v) + b"e"
    assert isinstance(v, np.ndarray) and v.dtype == np.uint8
    # numpy's own reduce of a uint8 array, as numpy 1.x under Python 2 pickled it.
    out = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    out += _i(0) + b"\x85" + _s(b"b") + b"\x87R"
    out += b"(" + _i(1) + b"(" + b"".join(_i(d) for d in v.shape) + b"t"
    out += b"cnumpy\ndtype\n" + _s(b"u1") + _i(0) + _i(1) + b"\x87R"
    out += b"(" + _i(3) + _s(b"|") + b"NNN" + _i(-1) + _i(-1) + _i(0) + b"tb"
    return out + b"\x89" + _s(v.tobytes()) + b"tb"


def py2_pickle(d: dict) -> bytes:
    """Protocol-2 pickle of a dict with byte-string keys, like the official CIFAR batches."""
    return b"\x80\x02}(" + b"".join(_s(k) + _val(v) for k, v in d.items()) + b"u."


def _cifar10(root: Path, n: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    out = {}
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = np.random.default_rng(b).integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(b + k) % 10 for k in range(n)]
        (d / name).write_bytes(py2_pickle({b"batch_label": b"x", b"labels": labels, b"data": data}))
        out[name] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    (d / "batches.meta").write_bytes(py2_pickle({b"label_names": names, b"num_vis": 3072}))
    return out


def test_cifar10_reads_python2_pickles_exactly(tmp_path: Path):
    src = _cifar10(tmp_path)
    tr = load_dataset("cifar10", root=tmp_path)
    te = load_dataset("cifar10", root=tmp_path, split="test")
    assert len(tr) == 20 and len(te) == 4 and tr.input_shape == (3, 32, 32)
    assert tr.images.dtype == torch.uint8 and tr.classes[9] == "truck"
    data, labels = src["data_batch_2"]
    # Row layout: 1024 red values, 1024 green, 1024 blue, each 32x32 row-major.
    img, lab = tr[4 + 1]
    assert int(lab) == labels[1]
    assert torch.equal(
        img[1, 2, 5], torch.tensor(data[1, 1024 + 2 * 32 + 5] / 255, dtype=torch.float32)
    )
    assert torch.equal(te.images.reshape(4, -1), torch.from_numpy(src["test_batch"][0]))
    assert te.labels.tolist() == src["test_batch"][1]


def test_cifar100_fine_and_coarse(tmp_path: Path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    data = np.full((3, 3072), 7, np.uint8)
    batch = {b"data": data, b"fine_labels": [99, 0, 42], b"coarse_labels": [19, 0, 3]}
    (d / "train").write_bytes(py2_pickle(batch))
    fine = load_dataset("cifar100", root=tmp_path)
    coarse = load_dataset("cifar100", root=tmp_path, labels="coarse")
    assert fine.num_classes == 100 and fine.labels.tolist() == [99, 0, 42]
    assert coarse.num_classes == 20 and coarse.labels.tolist() == [19, 0, 3]
    assert float(fine.tensors()[0].max()) == pytest.approx(7 / 255)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo x > pwned.txt",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_refused_without_running(tmp_path: Path, monkeypatch, protocol):
    monkeypatch.chdir(tmp_path)
    blob = pickle.dumps({"data": _Evil()}, protocol=protocol)
    assert b"system" in blob
    # Belt and braces: were the global resolved, the call would be recorded, not run.
    calls: list[str] = []

    def record(cmd: str) -> int:
        calls.append(cmd)
        return 0

    monkeypatch.setattr(os, "system", record)
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle global (posix|os)\.system"):
        SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
    assert calls == [] and not (tmp_path / "pwned.txt").exists()
    # Through the CIFAR reader the same file fails with the same clear error.
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(blob)
    with pytest.raises(UnsafePickleError, match="not an official CIFAR batch"):
        load_dataset("cifar10", root=tmp_path, split="test")
    assert calls == []


def test_other_globals_refused(tmp_path: Path):
    p = tmp_path / "f"
    p.write_bytes(pickle.dumps({"a": io.BytesIO}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"_io\.BytesIO"):
        safe_load(p)


def test_safe_load_plain_containers_and_arrays(tmp_path: Path):
    p = tmp_path / "f"
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    p.write_bytes(pickle.dumps({b"data": a, b"labels": [1, 2]}, protocol=4))
    got = safe_load(p)
    assert np.array_equal(got[b"data"], a) and got[b"labels"] == [1, 2]


def test_cifar_corrupt_and_inconsistent(tmp_path: Path):
    src = _cifar10(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    full = (d / "test_batch").read_bytes()
    (d / "test_batch").write_bytes(full[: len(full) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated pickle"):
        load_dataset("cifar10", root=tmp_path, split="test")
    data = src["test_batch"][0]
    (d / "test_batch").write_bytes(py2_pickle({b"data": data, b"labels": [1, 2, 3]}))
    with pytest.raises(DatasetError, match="4 images but 3 labels"):
        load_dataset("cifar10", root=tmp_path, split="test")
    (d / "test_batch").write_bytes(py2_pickle({b"data": data[:, :100], b"labels": [1] * 4}))
    with pytest.raises(DatasetError, match="100 values, expected 3072"):
        load_dataset("cifar10", root=tmp_path, split="test")


def test_cifar_verify_md5(tmp_path: Path):
    _cifar10(tmp_path)
    with pytest.raises(DatasetError, match=r"checksum mismatch .* expected 40351d587109b951"):
        load_dataset("cifar10", root=tmp_path, split="test", verify=True)


def test_cifar_missing_one_line(tmp_path: Path):
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar100", root=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "'cifar100'" in msg and "train" in msg
    assert str(tmp_path / "cifar-100-python") in msg and "cifar-*-python.tar.gz" in msg


# ---------------------------------------------------------------- SVHN


def test_svhn_mat(tmp_path: Path):
    (tmp_path / "SVHN").mkdir()
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [9], [10], [5]], dtype=np.uint8)
    scipy.io.savemat(tmp_path / "SVHN" / "test_32x32.mat", {"X": x, "y": y})
    ds = load_dataset("svhn", root=tmp_path, split="test")
    assert ds.labels.tolist() == [0, 1, 9, 0, 5] and ds.input_shape == (3, 32, 32)
    assert int(ds.images[3, 2, 7, 11]) == int(x[7, 11, 2, 3])  # X is H x W x C x N
    (tmp_path / "SVHN" / "test_32x32.mat").write_bytes(b"garbage" * 10)
    with pytest.raises(DatasetError, match=r"corrupt or unreadable \.mat"):
        load_dataset("svhn", root=tmp_path, split="test")
    with pytest.raises(DatasetError, match=r"train_32x32\.mat"):
        load_dataset("svhn", root=tmp_path)


# ---------------------------------------------------------------- TinyImageNet


def _tiny(root: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    d = root / "tiny-imagenet-200"
    wnids = ["n02", "n01"]  # unsorted on purpose: classes are sorted
    (d / "val" / "images").mkdir(parents=True)
    (d / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (d / "words.txt").write_text("n01\tgoldfish\nn02\ttabby, tabby cat\nn03\tunused\n")
    imgs = {}
    for k, w in enumerate(wnids):
        (d / "train" / w / "images").mkdir(parents=True)
        for j in range(2):
            a = np.full((64, 64, 3), 10 * k + j, np.uint8)
            a[0, 0] = (255, 0, 128)
            Image.fromarray(a).save(d / "train" / w / "images" / f"{w}_{j}.png")
            # PNG (lossless) under a .JPEG name: Pillow reads by content, values stay exact.
            (d / "train" / w / "images" / f"{w}_{j}.png").rename(
                d / "train" / w / "images" / f"{w}_{j}.JPEG"
            )
            imgs[f"{w}_{j}"] = a
    grey = np.full((64, 64), 77, np.uint8)
    Image.fromarray(grey).save(d / "val" / "images" / "val_0.png")
    (d / "val" / "images" / "val_0.png").rename(d / "val" / "images" / "val_0.JPEG")
    (d / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t63\t63\n")
    return imgs


def test_tinyimagenet_folder(tmp_path: Path):
    imgs = _tiny(tmp_path)
    tr = load_dataset("tinyimagenet", root=tmp_path)
    assert len(tr) == 4 and tr.input_shape == (3, 64, 64) and tr.num_classes == 2
    assert tr.classes == ["goldfish", "tabby, tabby cat"]  # sorted wnids n01, n02
    assert tr.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(tr.images[2].permute(1, 2, 0), torch.from_numpy(imgs["n02_0"]))
    assert (tmp_path / "tiny-imagenet-200" / "robustact-train.npy").is_file()
    again = load_dataset("tinyimagenet", root=tmp_path)  # from the cache
    assert torch.equal(again.images, tr.images)
    va = load_dataset("tinyimagenet", root=tmp_path, split="test")
    assert va.labels.tolist() == [1] and va.images[0].unique().tolist() == [77]  # grey -> RGB


def test_tinyimagenet_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match=r"'tinyimagenet'.*wnids\.txt"):
        load_dataset("tinyimagenet", root=tmp_path)
    _tiny(tmp_path)
    bad = tmp_path / "tiny-imagenet-200" / "train" / "n01" / "images" / "n01_0.JPEG"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match="cannot decode image"):
        load_dataset("tinyimagenet", root=tmp_path, cache=False)


# ---------------------------------------------------------------- downloads (no network used)


def test_resources_table_has_official_checksums():
    mnist = {r.filename: r.md5 for r in dl.RESOURCES["MNIST"]}
    assert mnist["t10k-images-idx3-ubyte.gz"] == "9fb629c4189551a2d022fa330f9573f3"
    assert mnist["t10k-labels-idx1-ubyte.gz"] == "ec29112dd5afa0611ce80d1b7f02629c"
    for key in ("MNIST", "FashionMNIST", "KMNIST", "cifar-10-batches-py", "SVHN"):
        assert all(len(r.md5) == 32 and r.url.startswith("http") for r in dl.RESOURCES[key])


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_checks_md5(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"bad"))
    with pytest.raises(DatasetError, match="checksum mismatch for http://ufldl"):
        load_dataset("svhn", root=tmp_path, split="test", download=True)
    assert list((tmp_path / "SVHN").iterdir()) == []  # nothing half-written is left


def test_download_writes_verified_file(tmp_path: Path, monkeypatch):
    x = np.zeros((32, 32, 3, 2), np.uint8)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"X": x, "y": np.array([[3], [10]])})
    payload = buf.getvalue()
    real = dl.Resource("http://example.invalid/test_32x32.mat", "0" * 32, "test_32x32.mat")
    fake = dl.Resource(real.url, __import__("hashlib").md5(payload).hexdigest(), real.filename)
    monkeypatch.setitem(dl.RESOURCES, "SVHN", [fake])
    seen: list[str] = []

    def _open(url: str, timeout: float) -> _FakeResponse:
        seen.append(url)
        return _FakeResponse(payload)

    monkeypatch.setattr(dl.urllib.request, "urlopen", _open)
    ds = load_dataset("svhn", root=tmp_path, split="test", download=True)
    assert seen == [real.url] and ds.labels.tolist() == [3, 0]


def test_download_extracts_cifar_archive(tmp_path: Path, monkeypatch):
    import hashlib
    import tarfile

    staging = tmp_path / "staging"
    src = _cifar10(staging)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    payload = archive.read_bytes()
    md5 = hashlib.md5(payload).hexdigest()
    res = dl.Resource("http://x.invalid/c.tar.gz", md5, archive.name, extract=True)
    monkeypatch.setitem(dl.RESOURCES, "cifar-10-batches-py", [res])
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, timeout: _FakeResponse(payload))
    out = tmp_path / "data"
    te = load_dataset("cifar10", root=out, split="test", download=True)
    assert te.labels.tolist() == src["test_batch"][1] and (out / res.filename).is_file()


def test_zip_slip_refused(tmp_path: Path):
    import zipfile

    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(DatasetError, match=r"refuses to extract '\.\./outside\.txt'"):
        dl._safe_extract(z, tmp_path / "dest")
    assert not (tmp_path / "outside.txt").exists()
