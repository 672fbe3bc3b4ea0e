"""The download path against the real MNIST files, served over loopback HTTP."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from fakedata import write_idx_dataset
from initstudy.datasets import DATASETS, DataError, DataFile
from initstudy.download import DEADLINE_ENV, deadline_seconds, fetch_dataset, fetch_file

MNIST = DATASETS["mnist"].files
LABELS = "t10k-labels-idx1-ubyte.gz"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_fetches_and_verifies_all_four_files_over_http(mnist_dir: Path, serve, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "mnist"
    fetch_dataset(MNIST, [serve(mnist_dir)], dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted(MNIST)
    for name, file in MNIST.items():
        assert sha256((dest / name).read_bytes()) == file.checksum
        assert (dest / name).stat().st_size == file.size  # the published sizes are the catalogue's
    assert [p.name for p in dest.parent.iterdir()] == ["mnist"]  # no staging left behind


def test_corrupted_mirror_is_rejected_with_both_hashes(mnist_dir: Path, serve, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    data = bytearray((mnist_dir / LABELS).read_bytes())
    data[100] ^= 0xFF
    (bad / LABELS).write_bytes(bytes(data))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError) as info:
        fetch_file(LABELS, MNIST[LABELS], [serve(bad)], dest)
    message = str(info.value)
    assert "checksum mismatch" in message
    assert f"expected sha256 {MNIST[LABELS].checksum[7:]}, got {hashlib.sha256(data).hexdigest()}" in message
    assert list(dest.iterdir()) == []


def test_truncated_file_is_a_checksum_mismatch(mnist_dir: Path, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.mkdir()
    (short / LABELS).write_bytes((mnist_dir / LABELS).read_bytes()[:1000])
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_file(LABELS, MNIST[LABELS], [str(short)], tmp_path)
    assert not (tmp_path / LABELS).exists()


def test_falls_through_to_the_next_source(mnist_dir: Path, serve, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    sources = ["http://127.0.0.1:9/", serve(empty), f"file://{mnist_dir}"]
    assert fetch_file(LABELS, MNIST[LABELS], sources, tmp_path) == sources[2]
    assert (tmp_path / LABELS).exists()


def test_when_every_source_fails_each_failure_is_listed(serve, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    sources = [serve(empty), str(tmp_path / "nowhere"), "http://127.0.0.1:9/"]
    with pytest.raises(DataError) as info:
        fetch_file(LABELS, MNIST[LABELS], sources, tmp_path)
    message = str(info.value)
    assert f"could not fetch {LABELS} from any source" in message
    assert "404" in message and "No such file" in message and "Connection refused" in message
    assert "INITSTUDY_DATA_MIRROR" in message


def test_a_failed_dataset_leaves_the_previous_copy_untouched(mnist_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "mnist"
    shutil.copytree(mnist_dir, dest)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(mnist_dir / LABELS, partial / LABELS)
    with pytest.raises(DataError):
        fetch_dataset(MNIST, [str(partial)], dest)
    assert (dest / "train-images-idx3-ubyte.gz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist", "partial"]


def test_md5_checksums_verify_too(serve, tmp_path: Path) -> None:
    """Fashion-MNIST's published checksums are md5: the same path checks them."""
    mirror = tmp_path / "mirror"
    write_idx_dataset(mirror, n_train=20, n_val=5)
    files = {p.name: DataFile("md5:" + hashlib.md5(p.read_bytes()).hexdigest(), None) for p in mirror.iterdir()}
    fetch_dataset(files, [serve(mirror)], tmp_path / "fashion_mnist")
    assert sorted(p.name for p in (tmp_path / "fashion_mnist").iterdir()) == sorted(files)
    wrong = DataFile("md5:" + "0" * 32, None)
    with pytest.raises(DataError, match=f"expected md5 {'0' * 32}, got {files[LABELS].checksum[4:]}"):
        fetch_file(LABELS, wrong, [str(mirror)], tmp_path)


def test_the_deadline_grows_with_the_size_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEADLINE_ENV, raising=False)
    assert deadline_seconds(MNIST["train-images-idx3-ubyte.gz"]) == pytest.approx(60 + 9_912_422 / 32768)
    assert deadline_seconds(DataFile("md5:" + "0" * 32, None)) == 60 + 32768  # 1 GiB at 32 KiB/s
    monkeypatch.setenv(DEADLINE_ENV, "2.5")
    assert deadline_seconds(MNIST[LABELS]) == 2.5
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv(DEADLINE_ENV, bad)
        with pytest.raises(DataError, match=f"{DEADLINE_ENV} = '{bad}': not a positive number of seconds"):
            deadline_seconds(MNIST[LABELS])
