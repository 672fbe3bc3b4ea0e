"""IDX and CIFAR-10 parsing, the prepared arrays and their loading, on generated files and on
the real MNIST files."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from fakedata import cifar_batch, class_images, idx_bytes, write_cifar10, write_idx, write_idx_dataset
from initstudy.datasets import (
    CIFAR10_ARCHIVE,
    DATASETS,
    IDX_FILES,
    DataError,
    DataFile,
    dataset_files,
    load_split,
    prepare_dataset,
    read_dataset,
    read_idx,
)


def prepared(name: str, raw: Path) -> Path:
    """The `prepare` stage's output for the downloaded files in `raw`, in raw/prepared."""
    prepare_dataset(name, raw, raw / "prepared")
    return raw / "prepared"


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
    folder = prepared("mnist", tmp_path)
    full = load_split("mnist", folder)
    split = load_split("mnist", folder, train_samples=5, val_samples=3)
    assert split.x_train.shape == (5, 28, 28, 1) and split.x_train.dtype == np.float32
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    np.testing.assert_array_equal(split.x_train, full.x_train[:5])
    assert split.y_val.shape == (3,)


def test_images_and_labels_must_agree_in_count(tmp_path: Path) -> None:
    _write_dataset(tmp_path, 6, 5)
    with pytest.raises(DataError, match="6 images but train-labels-idx1-ubyte.gz has 5 labels"):
        read_dataset("mnist", tmp_path)


def test_the_prepared_arrays_hold_the_decoded_files_exactly(mnist_dir: Path, mnist_prepared: Path) -> None:
    decoded = dict(zip(("x_train", "y_train", "x_val", "y_val"), read_dataset("mnist", mnist_dir)))
    for name in ("y_train", "y_val"):
        saved = np.load(mnist_prepared / f"{name}.npy")
        assert saved.dtype == np.uint8
        np.testing.assert_array_equal(saved, decoded[name])
    for name in ("x_train", "x_val"):
        saved = np.load(mnist_prepared / f"{name}.npy")
        assert saved.dtype == np.float32
        # the bits of pixel / 255 in float32, as the stages computed them before the prepared copy held them
        assert np.array_equal(saved.view(np.uint32), (decoded[name].astype(np.float32) / 255.0).view(np.uint32))
        np.testing.assert_array_equal(np.rint(saved * 255).astype(np.uint8), decoded[name])


def test_the_loaded_images_are_the_prepared_files_mapped_read_only(mnist_prepared: Path) -> None:
    split = load_split("mnist", mnist_prepared, train_samples=1000)
    for images, name in ((split.x_train, "x_train"), (split.x_val, "x_val")):
        mapped = images
        while not isinstance(mapped, np.memmap):
            mapped = mapped.base
        assert Path(mapped.filename) == mnist_prepared / f"{name}.npy" and np.shares_memory(images, mapped)
        assert not images.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        split.x_val[0, 0, 0, 0] = 1.0


@pytest.mark.parametrize(("damage", "message"), [
    (lambda path: path.write_bytes(path.read_bytes()[:-100]), "cannot load the prepared mnist data"),
    (lambda path: np.save(path, np.zeros((4, 28, 28), np.float32)), "x_val is float32 \\(4, 28, 28\\), not float32 images"),
    (lambda path: np.save(path, np.zeros((4, 28, 28, 1), np.uint8)), "x_val is uint8"),  # as earlier versions prepared it
])
def test_a_damaged_prepared_array_is_named_with_the_command_that_remakes_it(tmp_path: Path, damage, message) -> None:
    _write_dataset(tmp_path, 6, 6)
    folder = prepared("mnist", tmp_path)
    damage(folder / "x_val.npy")
    with pytest.raises(DataError, match=message) as info:
        load_split("mnist", folder)
    assert "x_val" in str(info.value)


def test_labels_beyond_the_classes_are_refused(tmp_path: Path) -> None:
    _write_dataset(tmp_path, 6, 6)
    folder = prepared("mnist", tmp_path)
    np.save(folder / "y_val.npy", np.array([0, 1, 10, 2], np.uint8))
    with pytest.raises(DataError, match="y_val holds label 10; mnist has 10 classes"):
        load_split("mnist", folder)


def test_real_mnist_has_the_published_shapes(mnist_prepared: Path) -> None:
    split = load_split("mnist", mnist_prepared)
    assert split.x_train.shape == (60000, 28, 28, 1) and split.x_val.shape == (10000, 28, 28, 1)
    assert (DATASETS["mnist"].train_images, DATASETS["mnist"].val_images) == (60000, 10000)
    assert np.bincount(split.y_val).argmax() == 1 and np.bincount(split.y_val)[1] == 1135


def test_cifar10_archive_is_read_with_its_pixel_layout(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_batch=6, n_test=4)
    split = load_split("cifar10", prepared("cifar10", tmp_path))
    assert split.x_train.shape == (30, 32, 32, 3) and split.x_val.shape == (4, 32, 32, 3)
    images, labels = class_images(6, (32, 32, 3), seed=3)  # what data_batch_3 holds
    np.testing.assert_array_equal(split.x_train[12:18], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(split.y_train[12:18], labels)
    rows = pickle.loads(cifar_batch(images, labels, "x"), encoding="bytes")[b"data"]
    assert rows[0, 1] == images[0, 0, 1, 0] and rows[0, 1024] == images[0, 0, 0, 1]  # R plane, then G


def test_fashion_mnist_is_read_like_mnist(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, n_train=12, n_val=5)
    split = load_split("fashion_mnist", prepared("fashion_mnist", tmp_path), train_samples=10)
    assert split.x_train.shape == (10, 28, 28, 1) and split.y_val.shape == (5,)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"data_batch_2": pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)},
         "data_batch_2: data \\(3, 3072\\) and 2 labels"),
        ({"test_batch": pickle.dumps(os.system, protocol=2)}, "refusing to load posix.system"),
        ({"data_batch_5": b"not a pickle"}, "UnpicklingError"),
    ],
)
def test_a_broken_cifar10_archive_is_named(tmp_path: Path, members: dict, message: str) -> None:
    path = write_cifar10(tmp_path, per_batch=3, n_test=2, members=members)
    with pytest.raises(DataError, match=message) as info:
        read_dataset("cifar10", tmp_path)
    assert str(path) in str(info.value) and "not a readable CIFAR-10 python archive" in str(info.value)


def test_a_truncated_or_incomplete_cifar10_archive_is_named(tmp_path: Path) -> None:
    path = write_cifar10(tmp_path, per_batch=3, n_test=2)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="not a readable CIFAR-10 python archive"):
        read_dataset("cifar10", tmp_path)


def test_published_checksums_can_be_replaced_and_the_size_is_then_unknown() -> None:
    own = "sha256:" + "0" * 64
    assert dataset_files("cifar10", {CIFAR10_ARCHIVE: own}) == {CIFAR10_ARCHIVE: DataFile(own, None)}
    assert dataset_files("cifar10", {CIFAR10_ARCHIVE: own})[CIFAR10_ARCHIVE].max_bytes == 1 << 30
    labels = dataset_files("fashion_mnist", {})["t10k-labels-idx1-ubyte.gz"]
    assert labels.checksum.startswith("md5:") and labels.size == labels.max_bytes == 5148


def test_asking_for_more_samples_than_the_files_hold_is_an_error(tmp_path: Path) -> None:
    """A mirror of one's own may hold fewer images than the published dataset."""
    _write_dataset(tmp_path, 6, 6)
    folder = prepared("mnist", tmp_path)
    assert len(load_split("mnist", folder, train_samples=6, val_samples=4).x_val) == 4
    with pytest.raises(DataError, match=f"data.train_samples = 7: {folder} holds only 6 training images"):
        load_split("mnist", folder, train_samples=7)
    with pytest.raises(DataError, match="data.val_samples = 5: .* holds only 4 validation images"):
        load_split("mnist", folder, val_samples=5)

