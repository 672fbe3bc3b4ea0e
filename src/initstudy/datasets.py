"""Dataset files, their published checksums, the formats they come in (IDX, CIFAR-10
python), and the prepared copy the stages load: one uncompressed .npy file per array,
decoded, checked and scaled once by the `prepare` stage, memory-mapped by every other."""

from __future__ import annotations

import gzip
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from initstudy.atomic import write_atomically
from initstudy.errors import StudyError


class DataError(StudyError):
    """A data file is missing, corrupt or not in the expected format."""


IDX_FILES = (  # train images, train labels, validation images, validation labels
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"


# The most bytes a file whose checksum data.checksums replaces may have: its size is
# unknown (a mirror of one's own, e.g. generated data), and 1 GiB is six times the largest
# published file (the CIFAR-10 archive) while stopping an endless source long before a disk fills.
UNKNOWN_SIZE_LIMIT = 1 << 30


@dataclass(frozen=True)
class DataFile:
    """A file to download: its checksum ("sha256:<hex>" or "md5:<hex>") and its size in
    bytes, None where unknown (a file of one's own, see UNKNOWN_SIZE_LIMIT)."""

    checksum: str
    size: int | None

    @property
    def max_bytes(self) -> int:
        """The most bytes a source may send for this file."""
        return UNKNOWN_SIZE_LIMIT if self.size is None else self.size


@dataclass(frozen=True)
class Dataset:
    """A dataset's published files, its number of classes, the side of its square images,
    its numbers of training and validation images, and the reader of its format."""

    classes: int
    image_size: int
    train_images: int
    val_images: int
    files: dict[str, DataFile]
    reader: Callable[[Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _idx_dataset(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return _pair(directory, *IDX_FILES[:2]) + _pair(directory, *IDX_FILES[2:])


def _cifar10_dataset(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return read_cifar10(directory / CIFAR10_ARCHIVE)


def _files(names: tuple[str, ...], checksums: tuple[str, ...], sizes: tuple[int, ...]) -> dict[str, DataFile]:
    return {name: DataFile(checksum, size) for name, checksum, size in zip(names, checksums, sizes, strict=True)}


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset(
        classes=10,
        image_size=28,
        train_images=60_000,
        val_images=10_000,
        files=_files(IDX_FILES, (
            "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ), (9_912_422, 28_881, 1_648_877, 4_542)),
        reader=_idx_dataset,
    ),
    "fashion_mnist": Dataset(  # Zalando Research publish md5 sums only
        classes=10,
        image_size=28,
        train_images=60_000,
        val_images=10_000,
        files=_files(IDX_FILES, (
            "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "md5:25c81989df183df01b3e8a0aad5dffbe",
            "md5:bef4ecab320f06d8554ea6380940ec79",
            "md5:bb300cfdad3c16e7a12a480ee83cd310",
        ), (26_421_880, 29_515, 4_422_102, 5_148)),
        reader=_idx_dataset,
    ),
    "cifar10": Dataset(
        classes=10,
        image_size=32,
        train_images=50_000,
        val_images=10_000,
        files=_files(
            (CIFAR10_ARCHIVE,),
            ("sha256:6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",),
            (170_498_071,),
        ),
        reader=_cifar10_dataset,
    ),
}


def dataset_files(name: str, overrides: dict[str, str]) -> dict[str, DataFile]:
    """The files of dataset `name`; a checksum in `overrides` replaces the published one,
    and the file's size is then unknown."""
    return {
        file: DataFile(overrides[file], None) if file in overrides else published
        for file, published in DATASETS[name].files.items()
    }


@dataclass(frozen=True)
class Split:
    """Training and validation arrays: float32 images scaled to [0, 1] (memory-mapped, read-only
    when loaded by `load_split`), integer labels."""

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


def _pair(directory: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(directory / images), read_idx(directory / labels)
    if len(x) != len(y):
        raise DataError(f"{directory / images}: {len(x)} images but {labels} has {len(y)} labels")
    return x[..., np.newaxis], y


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers, nothing that could run other code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(tar: tarfile.TarFile, member: str) -> tuple[np.ndarray, np.ndarray]:
    stream = tar.extractfile(f"cifar-10-batches-py/{member}")
    if stream is None:
        raise KeyError(member)
    batch = _ArrayUnpickler(stream, encoding="bytes").load()
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{member}: data {data.shape} and {len(labels)} labels")
    # each row holds the red, green and blue planes of a 32×32 image in turn
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar10(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The five training batches and the test batch of the CIFAR-10 python archive, read in memory."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            parts = [_cifar_batch(tar, f"data_batch_{i}") for i in range(1, 6)]
            x_val, y_val = _cifar_batch(tar, "test_batch")
    except (OSError, EOFError, tarfile.TarError, pickle.UnpicklingError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CIFAR-10 python archive ({exc!r})") from None
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    return x_train, y_train, x_val, y_val


PREPARED = ("x_train", "y_train", "x_val", "y_val")


def read_dataset(name: str, directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The downloaded files of dataset `name` decoded: training and validation images of
    shape (height, width, channels) as uint8, and their labels, each checked."""
    arrays = DATASETS[name].reader(directory)
    _check(name, dict(zip(PREPARED, arrays)), directory)
    return arrays


def _check(name: str, arrays: dict[str, np.ndarray], where: Path, pixels: type = np.uint8, remedy: str = "") -> None:
    """Raise DataError (ending in `remedy`) unless `arrays` are images (of `pixels`) and labels
    of dataset `name`."""
    spec = DATASETS[name]
    for part in ("train", "val"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.dtype != pixels or x.ndim != 4 or x.shape[1:3] != (spec.image_size, spec.image_size):
            raise DataError(f"{where}: x_{part} is {x.dtype} {x.shape}, not {np.dtype(pixels)} images of "
                            f"{spec.image_size}×{spec.image_size} pixels{remedy}")
        if y.dtype != np.uint8 or y.shape != (len(x),):
            raise DataError(f"{where}: y_{part} is {y.dtype} {y.shape}, not {len(x)} uint8 labels{remedy}")
        if len(y) and int(y.max()) >= spec.classes:
            raise DataError(f"{where}: y_{part} holds label {int(y.max())}; {name} has {spec.classes} classes{remedy}")


def prepare_dataset(name: str, raw: Path, out: Path) -> None:
    """Decode the downloaded files of dataset `name` in `raw` into out/<array>.npy: images as
    float32 scaled to [0, 1], which a stage memory-maps as they are (no copy, no conversion),
    labels as uint8."""
    x_train, y_train, x_val, y_val = read_dataset(name, raw)
    for array_name, array in zip(PREPARED, (scaled(x_train), y_train, scaled(x_val), y_val)):
        write_atomically(out / f"{array_name}.npy", lambda tmp, a=array: np.save(tmp, a, allow_pickle=False))


def scaled(images: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1]: each value / 255, rounded once."""
    return images.astype(np.float32) / np.float32(255)


def load_split(
    name: str, directory: Path, train_samples: int | None = None, val_samples: int | None = None
) -> Split:
    """Load the prepared dataset in `directory`: images scaled to [0, 1] and integer labels,
    keeping the first N samples of each part if asked (more than the part holds is an error).

    The images are memory-mapped, read-only: nothing is read until a sample is used, and
    processes training on the same data share its pages.
    """
    remedy = "; `dvc repro --force prepare` makes the prepared data again"
    arrays = {}
    for array_name in PREPARED:
        try:
            arrays[array_name] = np.load(directory / f"{array_name}.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{directory / array_name}.npy: cannot load the prepared {name} data ({exc}){remedy}") from None
    _check(name, arrays, directory, np.float32, remedy)
    for key, limit, part, images in (("data.train_samples", train_samples, "training", arrays["x_train"]),
                                     ("data.val_samples", val_samples, "validation", arrays["x_val"])):
        if limit is not None and limit > len(images):
            raise DataError(f"{key} = {limit}: {directory} holds only {len(images):,} {part} images")
    # plain ndarray views of the maps: np.memmap's own indexing runs in Python, once per batch
    return Split(
        np.asarray(arrays["x_train"][:train_samples]), arrays["y_train"][:train_samples].astype(np.int64),
        np.asarray(arrays["x_val"][:val_samples]), arrays["y_val"][:val_samples].astype(np.int64),
    )
