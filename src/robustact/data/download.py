"""Finding dataset files on disk, the official download table and checksum checks.

Nothing here touches the network unless a reader is called with ``download=True``.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from robustact.data.base import DatasetError, candidate_roots, download_root

__all__ = [
    "FILE_MD5",
    "RESOURCES",
    "Resource",
    "download_resources",
    "find_dir",
    "known_md5",
    "md5sum",
    "missing_error",
    "verify_md5",
]


@dataclass(frozen=True)
class Resource:
    """One official file: where to fetch it, its md5 and (for archives) what to extract."""

    url: str
    md5: str
    filename: str
    extract: bool = False


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FMNIST = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_KMNIST = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"


def _idx_set(base: str, md5s: Sequence[str]) -> list[Resource]:
    names = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    return [Resource(base + n, m, n) for n, m in zip(names, md5s, strict=True)]


#: Official files and md5 checksums (the same ones torchvision checks), by folder name.
RESOURCES: dict[str, list[Resource]] = {
    "MNIST": _idx_set(
        _MNIST,
        [
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ],
    ),
    "FashionMNIST": _idx_set(
        _FMNIST,
        [
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ],
    ),
    "KMNIST": _idx_set(
        _KMNIST,
        [
            "bdb82020997e1d708af4cf47b453dcf7",
            "e144d726b3acfaa3e44228e80efcd344",
            "5c965bf0a639b31b8f53240b1b52f4d7",
            "7320c461ea6c1c855c0b718fb2a4b134",
        ],
    ),
    "EMNIST": [
        Resource(
            "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
            "58c8d27c78d21e728a6bc7b3cc06412e",
            "gzip.zip",
            extract=True,
        )
    ],
    "cifar-10-batches-py": [
        Resource(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            "cifar-10-python.tar.gz",
            extract=True,
        )
    ],
    "cifar-100-python": [
        Resource(
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
            "cifar-100-python.tar.gz",
            extract=True,
        )
    ],
    "SVHN": [
        Resource(
            "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
            "e26dedcc434d2e4c54c9b2d4a06d8373",
            "train_32x32.mat",
        ),
        Resource(
            "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
            "eb5a983be6a315427106f1b164d9cef3",
            "test_32x32.mat",
        ),
        Resource(
            "http://ufldl.stanford.edu/housenumbers/extra_32x32.mat",
            "a93ce644f1a588dc4d68dda5feec44a7",
            "extra_32x32.mat",
        ),
    ],
    "tiny-imagenet-200": [
        Resource(
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
            "90528d7ca1a48142e341f4ef8d21d0de",
            "tiny-imagenet-200.zip",
            extract=True,
        )
    ],
}


#: md5 of the extracted files (CIFAR batches), for ``verify=True`` on files already on disk.
FILE_MD5: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
    "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
}


def known_md5(folder: str, path: Path) -> str | None:
    """The official md5 of ``path`` (a file of dataset folder ``folder``), if known."""
    for res in RESOURCES.get(folder, []):
        if res.filename == path.name:
            return res.md5
    return FILE_MD5.get(f"{folder}/{path.name}") or (
        FILE_MD5.get(path.name) if folder == "cifar-10-batches-py" else None
    )


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_dir(root: str | Path | None, subdir: str, names: Sequence[Sequence[str]]) -> Path | None:
    """First ``<candidate root>/<subdir>`` holding, for every group in ``names``, one of its files.

    A user ``root`` that already *is* the folder (e.g. ``.../MNIST/raw``) is accepted too.

    Args:
        root: user root or None for the default search (see ``candidate_roots``).
        subdir: folder below the root, e.g. "MNIST/raw".
        names: groups of alternatives, e.g. [["a", "a.gz"], ["b", "b.gz"]].
    """
    dirs = [base / subdir for base in candidate_roots(root)]
    if root is not None:
        dirs.append(Path(root).expanduser())
    for d in dirs:
        if all(any((d / n).is_file() for n in group) for group in names):
            return d
    return None


def missing_error(
    dataset: str, root: str | Path | None, subdir: str, files: Sequence[str], how: str
) -> DatasetError:
    """The one-line error for absent files: what, where searched, how to get them."""
    dirs = ", ".join(str(b / subdir) for b in candidate_roots(root))
    return DatasetError(
        f"dataset {dataset!r}: files not found: {', '.join(files)}; searched {dirs}. "
        f"{how} Then pass root=<dir holding {subdir.split('/')[0]}/>, set ROBUSTACT_DATA, "
        "or call with download=True where a network is available."
    )


def _safe_extract(archive: Path, dest: Path) -> None:
    top = dest.resolve()

    def inside(member: str) -> None:
        if not (dest / member).resolve().is_relative_to(top):
            raise DatasetError(f"{archive}: refuses to extract {member!r} outside {dest}")

    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                inside(m.name)
                if not (m.isfile() or m.isdir()):
                    raise DatasetError(f"{archive}: refuses link or special file {m.name!r}")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")
            else:  # Python < 3.10.12: members were checked above
                tf.extractall(dest)
        return
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            inside(member)
        zf.extractall(dest)


def download_resources(
    key: str, root: str | Path | None, subdir: str = "", only: str | None = None
) -> Path:
    """Fetch the official files of ``key`` into ``<root>/<subdir>``, verify md5, extract.

    Args:
        key: a key of :data:`RESOURCES`.
        root: user root (None: ``$ROBUSTACT_DATA`` or ~/.cache/robustact/datasets).
        subdir: folder below the root.
        only: fetch just the resource with this file name.

    Returns:
        The directory the files were written to.
    """
    dest = download_root(root) / subdir
    dest.mkdir(parents=True, exist_ok=True)
    for res in RESOURCES[key]:
        if only is not None and res.filename != only:
            continue
        path = dest / res.filename
        if not (path.is_file() and md5sum(path) == res.md5):
            tmp = path.with_suffix(path.suffix + ".part")
            try:
                with urllib.request.urlopen(res.url, timeout=60) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise DatasetError(f"download of {res.url} failed ({e}); check the network") from e
            got = md5sum(tmp)
            if got != res.md5:
                tmp.unlink(missing_ok=True)
                raise DatasetError(
                    f"checksum mismatch for {res.url}: md5 {got}, expected {res.md5}; "
                    "the download is corrupt or the mirror changed, retry or fetch it by hand"
                )
            tmp.replace(path)
        if res.extract:
            _safe_extract(path, dest)
    return dest


def verify_md5(path: Path, expected: str) -> None:
    """Raise :class:`DatasetError` when ``path`` does not have md5 ``expected``."""
    got = md5sum(path)
    if got != expected:
        raise DatasetError(
            f"checksum mismatch for {path}: md5 {got}, expected {expected}; "
            "the file is corrupt or not the official one, delete it and fetch it again"
        )
