"""The pixel contract on the data side (ImageDataset refuses NaN, 0..255 floats, fractional
labels; converts only where lossless), an IDX header that overflows, and the validation
toolkit every module shares (robustact._validate)."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from robustact import _validate as V
from robustact.data import DatasetError, ImageDataset
from robustact.data.idx import read_idx

CLASSES = [str(i) for i in range(3)]


def _ds(images: object, labels: object = (0, 1, 2, 0)) -> ImageDataset:
    return ImageDataset(images, labels, CLASSES, "toy")  # type: ignore[arg-type]


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text and text.startswith("toy: "), text
    return text


def test_nan_and_inf_images_are_refused() -> None:
    x = torch.rand(4, 1, 2, 2)
    x[1, 0, 0, 0] = float("nan")
    with pytest.raises(DatasetError) as e:
        _ds(x)
    assert "NaN or inf" in _one_line(e)
    x[1, 0, 0, 0] = float("inf")
    with pytest.raises(DatasetError, match="NaN or inf"):
        _ds(x)


def test_float_images_in_0_255_are_refused_with_the_fix() -> None:
    x = torch.randint(0, 256, (4, 1, 2, 2)).float()
    with pytest.raises(DatasetError) as e:
        _ds(x)
    assert "divide by 255" in _one_line(e)
    with pytest.raises(DatasetError, match=r"must lie in \[0, 1\].*normalisation"):
        _ds(torch.rand(4, 1, 2, 2) - 0.5)  # a mean/std-normalised image
    assert _ds(x / 255).images.dtype == torch.float32  # the fix works


def test_fractional_labels_are_refused_not_truncated() -> None:
    x = torch.rand(4, 1, 2, 2)
    with pytest.raises(DatasetError) as e:
        _ds(x, torch.tensor([0.0, 1.5, 2.0, 0.0]))
    assert "1.5" in _one_line(e) and "not truncated" in str(e.value)
    with pytest.raises(DatasetError, match="whole class indices"):
        _ds(x, [0.0, float("nan"), 1.0, 2.0])
    ds = _ds(x, torch.tensor([0.0, 1.0, 2.0, 0.0]))  # whole floats are fine
    assert ds.labels.tolist() == [0, 1, 2, 0] and ds.labels.dtype == torch.int64
    with pytest.raises(DatasetError, match=r"labels span 0\.\.3"):
        _ds(x, [0, 1, 3, 0])


def test_lossless_dtype_conversions_and_lossy_refusals() -> None:
    x = torch.rand(4, 1, 2, 2)
    half = _ds(x.half())
    assert half.images.dtype == torch.float32 and torch.equal(half.images, x.half().float())
    exact64 = (torch.randint(0, 17, (4, 1, 2, 2)) / 16.0).double()  # k/16: float32-exact
    assert torch.equal(_ds(exact64).images, exact64.float())
    with pytest.raises(DatasetError) as e:
        _ds(torch.rand(4, 1, 2, 2, dtype=torch.float64))
    assert "float64" in _one_line(e) and "images.float()" in str(e.value)
    ints = torch.randint(0, 256, (4, 1, 2, 2), dtype=torch.int32)
    as_u8 = _ds(ints)
    assert as_u8.images.dtype == torch.uint8 and torch.equal(as_u8.images.int(), ints)
    with pytest.raises(DatasetError, match=r"0\.\.255"):
        _ds(ints * 2)
    assert _ds(np.random.default_rng(0).random((4, 1, 2, 2), dtype=np.float32)).num_classes == 3
    with pytest.raises(DatasetError, match=r"\(N, C, H, W\)"):
        _ds(torch.rand(4, 2, 2))


def _idx(path: Path, dims: list[int], payload: bytes) -> Path:
    head = bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    path.write_bytes(gzip.compress(head + payload))
    return path


def test_idx_header_whose_dimensions_overflow(tmp_path: Path) -> None:
    # 2**32 * 2**32 wraps to 0 in int64 arithmetic, "matching" an empty payload
    f = _idx(tmp_path / "x-idx3-ubyte.gz", [2**32 - 1, 2**32 - 1, 2**32 - 1], b"")
    with pytest.raises(DatasetError) as e:
        read_idx(f, 3)
    text = str(e.value)
    assert "\n" not in text and "truncated or corrupt" in text
    ok = _idx(tmp_path / "y-idx1-ubyte.gz", [3], b"\x00\x01\x02")
    assert read_idx(ok, 1).tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- the toolkit


@given(st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.booleans(), st.text()))
def test_check_int_accepts_exactly_integers_in_range(v: object) -> None:
    good = isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 3
    if good:
        assert V.check_int("k", v, 0, 3) == v
    else:
        with pytest.raises(ValueError, match=r"^k must be an integer in \[0, 3\], got "):
            V.check_int("k", v, 0, 3)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans()))
def test_check_float_open_and_closed_bounds(v: float) -> None:
    ok = not isinstance(v, bool) and math.isfinite(float(v)) and 0.0 < float(v) <= 1.0
    if ok:
        assert V.check_float("p", v, 0.0, 1.0, min_open=True) == float(v)
    else:
        with pytest.raises(ValueError, match=r"^p must be a finite number in \(0, 1\], got "):
            V.check_float("p", v, 0.0, 1.0, min_open=True)


def test_checks_are_one_line_and_name_the_fix() -> None:
    assert V.is_int(np.int64(3)) and not V.is_int(True) and V.is_number(np.float32(1))
    with pytest.raises(ValueError, match="did you mean 'linf'"):
        V.check_choice("norm", "lnf", ["linf", "l2"])
    assert V.check_probability("q", 1) == 1.0
    x = torch.rand(3, 1, 2, 2)
    y = torch.tensor([0, 1, 2])
    assert V.check_batch(x, y, 3)[0] is x
    bad = [
        (lambda: V.check_images(x.numpy()), TypeError, "torch tensor"),
        (lambda: V.check_images((x * 255).byte()), TypeError, "divide uint8 pixels by 255"),
        (lambda: V.check_images(x.double()), TypeError, "x.float()"),
        (lambda: V.check_images(x * 255), ValueError, "divide by 255"),
        (lambda: V.check_images(torch.rand(3)), ValueError, "batched"),
        (lambda: V.check_labels(y.float(), 3), TypeError, "y.long()"),
        (lambda: V.check_labels(y, 4), ValueError, "N = 4"),
        (lambda: V.check_labels(y, 3, 2), ValueError, "labels must be in [0, 2)"),
        (lambda: V.check_labels(y - 1, 3), ValueError, "labels must be >= 0, got [-1, 1]"),
    ]
    for call, kind, needle in bad:
        with pytest.raises(kind) as e:
            call()
        assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_writable_paths(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    assert V.writable_dir(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert not (tmp_path / "new").exists()  # nothing created
    assert V.writable_file(tmp_path / "a" / "b.json").name == "b.json"
    with pytest.raises(ValueError, match="is a file"):
        V.writable_dir(f, "--out")
    with pytest.raises(ValueError, match="under the file"):
        V.writable_dir(f / "x", "--out")
    with pytest.raises(ValueError, match="is a folder"):
        V.writable_file(tmp_path, "--json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
