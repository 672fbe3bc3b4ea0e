"""`make verify`: damage in DVC's cache or in the workspace, which DVC does not see, is named
and repaired."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from test_interrupt import make
from workspace import Workspace

pytestmark = pytest.mark.training

RUN = "runs/mlp-zeros-0"


@pytest.fixture(scope="module")
def study(one_machine: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The session's small study, reproduced, in a copy of this module's own (each test leaves it
    repaired): its cache and data copied, not hard-linked, since the tests damage them in place.

    DVC records the md5 of each object it adds to its cache, by the file's inode, size and
    time, and re-hashes an object it finds writable unless that record matches. The copy's
    objects are new files: made writable, each is hashed once by `dvc status`, recorded and
    made read-only again, as the repro left the study's own; damage that keeps a file's size
    and times is then unseen by DVC, as bit rot is."""
    workspace = one_machine.copy(tmp_path_factory.mktemp("verify") / "repo", link=False)
    for path in (workspace.path / ".dvc" / "cache" / "files").rglob("*"):
        if path.is_file():
            path.chmod(0o644)
    assert workspace.run("dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    return workspace


def entry(workspace: Workspace, stage: str, path: str) -> str:
    """The md5 that dvc.lock records for output `path` of `stage`."""
    outs = yaml.safe_load((workspace.path / "dvc.lock").read_text())["stages"][stage]["outs"]
    return next(out["md5"] for out in outs if out["path"] == path)


def cache_object(workspace: Workspace, md5: str) -> Path:
    return workspace.path / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def file_in(workspace: Workspace, folder_md5: str, relpath: str) -> str:
    listing = yaml.safe_load(cache_object(workspace, folder_md5).read_text())
    return next(item["md5"] for item in listing if item["relpath"] == relpath)


def flip(path: Path, offset: int = -2) -> None:
    """Change one byte, keeping the file's times (as bit rot would)."""
    times = path.stat()
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def verify(workspace: Workspace, *args: str):
    return workspace.run(*make("verify", *args), check=False)


def test_a_damaged_run_in_the_cache_is_named_and_trained_again(study: Workspace) -> None:
    history = cache_object(study, file_in(study, entry(study, "train@mlp-zeros-0", RUN), "history.csv"))
    whole = history.read_bytes()
    flip(history)
    assert study.run("dvc", "status").stdout.strip() == "Data and pipelines are up to date."  # DVC does not see it
    report = verify(study, "VERIFY_ARGS=--no-repair")
    assert report.returncode == 2
    assert f"damaged: the cache object of {RUN}/history.csv (train@mlp-zeros-0)" in report.stdout
    fixed = verify(study)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "repair: train@mlp-zeros-0 again" in fixed.stdout and "repaired:" in fixed.stdout
    assert history.read_bytes() == whole
    assert "nothing damaged" in verify(study).stdout


def test_a_damaged_prepared_image_is_named_and_prepared_again(study: Workspace) -> None:
    images = cache_object(study, file_in(study, entry(study, "prepare", "data/prepared/mnist"), "x_train.npy"))
    whole = images.read_bytes()
    flip(images, offset=len(whole) // 2)
    fixed = verify(study)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "damaged: the cache object of data/prepared/mnist/x_train.npy (prepare)" in fixed.stdout
    assert images.read_bytes() == whole


def test_a_damaged_output_in_the_workspace_is_checked_out_again(study: Workspace) -> None:
    metrics = study.path / RUN / "metrics.json"
    whole = metrics.read_bytes()
    flip(metrics)
    fixed = verify(study)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"damaged: {RUN} in the workspace differs from what dvc.lock records (train@mlp-zeros-0)" in fixed.stdout
    assert "again, to make" not in fixed.stdout and metrics.read_bytes() == whole


def test_make_study_and_make_train_repair_damage_before_anything_else(study: Workspace) -> None:
    """The case DVC misses: a damaged object checked out is reported up to date by `dvc status`
    and `dvc repro`. `make study` and `make train` first re-hash what dvc.lock keeps in the cache, repair,
    and say nothing when all is whole."""
    history = cache_object(study, file_in(study, entry(study, "train@mlp-zeros-0", RUN), "history.csv"))
    images = cache_object(study, file_in(study, entry(study, "prepare", "data/prepared/mnist"), "x_train.npy"))
    whole = history.read_bytes(), images.read_bytes()
    flip(history)
    (study.path / RUN / "history.csv").unlink()
    study.run("dvc", "checkout", "--quiet", "train@mlp-zeros-0")  # DVC restores the damage
    assert (study.path / RUN / "history.csv").read_bytes() != whole[0]
    assert "didn't change" in study.run("dvc", "repro").stdout
    result = study.run(*make("study", "WORKERS=1"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"damaged: the cache object of {RUN}/history.csv (train@mlp-zeros-0)" in result.stdout
    assert "repaired:" in result.stdout
    assert history.read_bytes() == whole[0] and (study.path / RUN / "history.csv").read_bytes() == whole[0]

    flip(images, offset=len(whole[1]) // 2)  # what every worker checks out and trains from
    result = study.run(*make("train", "SHARD=1/1"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "damaged: the cache object of data/prepared/mnist/x_train.npy (prepare)" in result.stdout
    assert images.read_bytes() == whole[1]
    quiet = study.run(*make("study", "WORKERS=1"))
    assert "damaged" not in quiet.stdout and "nothing damaged" not in quiet.stdout, quiet.stdout
