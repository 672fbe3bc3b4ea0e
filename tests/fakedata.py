"""Small datasets written in the exact published formats (IDX, the CIFAR-10 python archive).

The images are learnable: each class has its own pattern, plus noise. Tests use the
writers; `python tests/fakedata.py cifar10 <folder>` writes a mirror to try a study on,
and prints the `dvc exp run` option setting the `data.checksums` it needs (the published checksums belong to the real files).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from initstudy.datasets import CIFAR10_ARCHIVE, IDX_FILES, read_idx


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian dims, data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def class_images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` uint8 images of `shape` and their labels 0-9: a fixed pattern per class plus noise."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(1234).integers(0, 256, (10, *shape))
    labels = rng.integers(0, 10, n)
    noise = rng.normal(0, 40, (n, *shape))
    return np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8), labels


def write_idx_dataset(folder: Path, n_train: int, n_val: int) -> None:
    """The four gzipped IDX files of an MNIST-like dataset of 28×28 images."""
    folder.mkdir(parents=True, exist_ok=True)
    x_train, y_train = class_images(n_train, (28, 28), seed=0)
    x_val, y_val = class_images(n_val, (28, 28), seed=1)
    for name, array in zip(IDX_FILES, (x_train, y_train, x_val, y_val)):
        write_idx(folder / name, array)


def write_first_images(mnist: Path, folder: Path, n_train: int, n_val: int) -> None:
    """The four MNIST files of folder `mnist`, cut to their first `n_train` training and
    `n_val` test images (and labels), in the same format: what `data.train_samples` and
    `data.val_samples` would keep of the whole files."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in zip(IDX_FILES, (n_train, n_train, n_val, n_val)):
        write_idx(folder / name, read_idx(mnist / name)[:n])


def cifar_batch(images: np.ndarray, labels: np.ndarray, name: str) -> bytes:
    """One batch file as the archive holds it: a protocol-2 pickle of a dict with bytes keys,
    each image a row of its red, green and blue 32×32 planes in turn."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)
    batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": rows,
             b"filenames": [f"{i}.png".encode() for i in range(len(images))]}
    return pickle.dumps(batch, protocol=2)


def write_cifar10(folder: Path, per_batch: int, n_test: int, members: dict[str, bytes] | None = None) -> Path:
    """The CIFAR-10 python archive: five training batches of `per_batch` images, a test batch,
    batches.meta; `members` adds or replaces files in it (for broken archives)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(1, 6):
        files[f"data_batch_{i}"] = cifar_batch(*class_images(per_batch, (32, 32, 3), seed=i), f"batch {i}")
    files["test_batch"] = cifar_batch(*class_images(n_test, (32, 32, 3), seed=0), "test")
    files["batches.meta"] = pickle.dumps({b"label_names": [f"class{i}".encode() for i in range(10)]}, protocol=2)
    files |= members or {}
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = folder / CIFAR10_ARCHIVE
    path.write_bytes(gzip.compress(archive.getvalue(), mtime=0))  # the same bytes every time
    return path


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file in `folder`, as data.checksums in params.yaml takes them."""
    return {p.name: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=["fashion_mnist", "cifar10"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--train", type=int, default=10000, help="training images in all")
    parser.add_argument("--val", type=int, default=2000, help="validation images")
    args = parser.parse_args()
    if args.dataset == "cifar10":
        write_cifar10(args.folder, args.train // 5, args.val)
    else:
        write_idx_dataset(args.folder, args.train, args.val)
    pairs = ",".join(f'{name}:"{checksum}"' for name, checksum in checksums(args.folder).items())
    print(f"-S '++data.checksums={{{pairs}}}'")  # Hydra syntax; ++ adds keys to the empty mapping


if __name__ == "__main__":
    main()
