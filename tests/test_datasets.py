"""IDX parsing and dataset loading, on generated files and on the real MNIST files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fakedata import idx_bytes, write_idx
from initstudy.datasets import IDX_FILES, DataError, load_split, read_idx


def test_read_idx_round_trips_gzipped_and_plain(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        np.testing.assert_array_equal(read_idx(write_idx(tmp_path / name, images)), images)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc", "not an IDX file of unsigned bytes"),
        (b"PK\x03\x04", "magic 504b0304"),
        (idx_bytes(np.zeros((5, 2, 2)))[:-3], "IDX body holds 17 bytes, header promises 20"),
        (b"\x00\x00\x08\x03\x00\x00", "IDX header truncated"),
    ],
)
def test_read_idx_rejects_bad_files_naming_them(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((100, 4))))[:-20])
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(path)


def _write_dataset(folder: Path, n_train: int, n_train_labels: int) -> None:
    rng = np.random.default_rng(0)
    train_images, train_labels, val_images, val_labels = IDX_FILES
    write_idx(folder / train_images, rng.integers(0, 256, (n_train, 28, 28)))
    write_idx(folder / train_labels, rng.integers(0, 10, n_train_labels))
    write_idx(folder / val_images, rng.integers(0, 256, (4, 28, 28)))
    write_idx(folder / val_labels, rng.integers(0, 10, 4))


def test_load_split_scales_pixels_and_takes_the_first_samples(tmp_path: Path) -> None:
    _write_dataset(tmp_path, 6, 6)
    full = load_split("mnist", tmp_path)
    split = load_split("mnist", tmp_path, train_samples=5, val_samples=3)
    assert split.x_train.shape == (5, 28, 28, 1) and split.x_train.dtype == np.float32
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    np.testing.assert_array_equal(split.x_train, full.x_train[:5])
    assert split.y_val.shape == (3,)


def test_images_and_labels_must_agree_in_count(tmp_path: Path) -> None:
    _write_dataset(tmp_path, 6, 5)
    with pytest.raises(DataError, match="6 images but train-labels-idx1-ubyte.gz has 5 labels"):
        load_split("mnist", tmp_path)


def test_real_mnist_has_the_published_shapes(mnist_dir: Path) -> None:
    split = load_split("mnist", mnist_dir)
    assert split.x_train.shape == (60000, 28, 28, 1) and split.x_val.shape == (10000, 28, 28, 1)
    assert np.bincount(split.y_val).argmax() == 1 and np.bincount(split.y_val)[1] == 1135
