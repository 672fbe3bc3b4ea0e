"""Dataset files, their published checksums, and the IDX format they come in."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from initstudy.errors import StudyError


class DataError(StudyError):
    """A data file is missing, corrupt or not in the expected format."""


@dataclass(frozen=True)
class DatasetFiles:
    """The four files of an IDX dataset, the sha256 of each, and the number of classes."""

    classes: int
    train_images: str
    train_labels: str
    val_images: str
    val_labels: str
    sha256: dict[str, str]


DATASETS: dict[str, DatasetFiles] = {
    "mnist": DatasetFiles(
        classes=10,
        train_images="train-images-idx3-ubyte.gz",
        train_labels="train-labels-idx1-ubyte.gz",
        val_images="t10k-images-idx3-ubyte.gz",
        val_labels="t10k-labels-idx1-ubyte.gz",
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
}


@dataclass(frozen=True)
class Split:
    """Training and validation arrays: images scaled to [0, 1], integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped or not) into an array."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] == 0:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX body holds {len(raw) - header} bytes, header promises {expected} {shape}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _pair(directory: Path, images: str, labels: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(directory / images), read_idx(directory / labels)
    if len(x) != len(y):
        raise DataError(f"{directory / images}: {len(x)} images but {labels} has {len(y)} labels")
    return (x[:limit].astype(np.float32) / 255.0, y[:limit].astype(np.int64))


def load_split(
    name: str, directory: Path, train_samples: int | None = None, val_samples: int | None = None
) -> Split:
    """Load a downloaded dataset, keeping the first N samples of each part if asked."""
    files = DATASETS[name]
    x_train, y_train = _pair(directory, files.train_images, files.train_labels, train_samples)
    x_val, y_val = _pair(directory, files.val_images, files.val_labels, val_samples)
    return Split(x_train, y_train, x_val, y_val)
