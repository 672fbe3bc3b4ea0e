"""Bad input, broken data, diverging and interrupted runs, through the real entry points."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, SMALL_STUDY, QuietHandler, run_stage, write_params
from initstudy import download
from initstudy.datasets import DATASETS, DataError
from initstudy.download import MIRROR_ENV, fetch_dataset, fetch_file
from initstudy.workspace import Workspace, command_env

MNIST = DATASETS["mnist"].checksums
LABELS = "t10k-labels-idx1-ubyte.gz"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Workspace:
    """A small study, trained once; tests below break it and check nothing was lost."""
    repo = Workspace.create(tmp_path_factory.mktemp("failures") / "repo", mirror=str(mnist_dir),
                            **SMALL_STUDY)
    repo.repro()
    repo.commit("trained")
    return repo


def outputs(repo: Workspace) -> dict[str, bytes]:
    files = [*repo.path.glob("runs/*/metrics.json"), *repo.path.glob("metrics/*"), *repo.path.glob("plots/*.png")]
    return {str(p.relative_to(repo.path)): p.read_bytes() for p in files}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"study": {"initializers": ["zeros", "he_normall"]}}, "Did you mean 'he_normal'?"),
        ({"train": {"epochs": 0}}, "train.epochs = 0: Input should be greater than 0"),
        ({"train": {"optimizer": "rmsprop"}}, "Input should be 'adam' or 'sgd'"),
        ({"model": {"dropout": 1.5}}, "model.dropout = 1.5: Input should be less than 1"),
        ({"study": {"seeds": [0, 0]}}, "repeated: 0"),
    ],
)
def test_a_bad_param_stops_repro_before_any_output_is_touched(trained: Workspace, changes, message) -> None:
    before = outputs(trained)
    trained.set_params(**changes)
    result = trained.run("dvc", "repro", check=False)
    trained.run("git", "checkout", "params.yaml")
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Running stage 'check_params'" in result.stdout
    assert "train@" not in result.stdout.split("Running stage 'check_params'")[1]
    assert outputs(trained) == before


def test_a_misspelt_key_stops_repro_naming_the_right_one(trained: Workspace) -> None:
    params = (trained.path / "params.yaml").read_text()
    (trained.path / "params.yaml").write_text(params.replace("  epochs:", "  epoch:"))
    result = trained.run("dvc", "repro", check=False)
    trained.run("git", "checkout", "params.yaml")
    assert result.returncode != 0
    assert "train.epoch: unknown key" in result.stderr and "Did you mean 'epochs'?" in result.stderr


def test_a_key_that_dvc_yaml_reads_stops_dvc_first_and_check_params_names_it(trained: Workspace) -> None:
    before = outputs(trained)
    params = (trained.path / "params.yaml").read_text()
    (trained.path / "params.yaml").write_text(params.replace("  seeds:", "  seed:"))
    result = trained.run("dvc", "repro", check=False)
    check = run_stage(trained.path, "check_params")
    trained.run("git", "checkout", "params.yaml")
    assert result.returncode != 0 and "Could not find 'study.seeds'" in result.stderr
    assert "Running stage" not in result.stdout
    assert outputs(trained) == before
    assert check.returncode == 2
    assert "study.seed: unknown key" in check.stderr and "Did you mean 'seeds'?" in check.stderr


def stage_pid(marker: str) -> int:
    """The process id of the running stage's Python process whose command line holds `marker`.

    DVC starts a stage as `$SHELL -c <cmd>`; dash (`/bin/sh`) stays as the parent of the
    command instead of replacing itself, so the Python process is picked, not that shell.
    """
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        cmdline = " ".join(argv)
        if Path(argv[0]).name.startswith("python") and "src/stages/" in cmdline and marker in cmdline:
            return int(proc.name)
    raise AssertionError(f"no stage process with {marker!r}")


def as_terminal_job() -> None:
    """Ctrl-C reaches a terminal's job even where the test runner ignores SIGINT (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_repro(repo: Workspace) -> subprocess.Popen[str]:
    """`dvc repro` in its own process group, as a terminal's foreground job."""
    return subprocess.Popen(["dvc", "repro"], cwd=repo.path, env=repo.env, text=True, start_new_session=True,
                            preexec_fn=as_terminal_job, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def running_train_stages(proc: subprocess.Popen[str], count: int) -> list[str]:
    """Read the repro's log until `count` train stages have started; return their keys."""
    started = []
    for line in proc.stdout:
        if line.startswith("Running stage 'train@"):
            started.append(line.split("@")[1].split("'")[0])
            if len(started) == count:
                return started
    raise AssertionError(f"repro ended after {len(started)} train stages")


@pytest.mark.parametrize(("interrupt", "seed"), [  # a new seed each: DVC's run-cache holds the earlier ones
    ("SIGTERM to the stage", 2), ("Ctrl-C (SIGINT to the job)", 3)])
def test_an_interrupted_training_stage_leaves_no_metrics_and_only_it_reruns(
    trained: Workspace, interrupt: str, seed: int
) -> None:
    trained.set_params(study={"seeds": [0, 1, seed]})  # two new runs: zeros-<seed>, he_normal-<seed>
    proc = start_repro(trained)
    started = running_train_stages(proc, 2)
    killed = trained.path / "runs" / started[1]
    deadline = time.time() + 120
    while not killed.exists():  # the stage creates it just before building and training the model
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.005)
    pid = stage_pid(f"--out runs/{started[1]}")
    os.kill(pid, signal.SIGSTOP)  # hold it mid-run: a small run could otherwise finish before the signal
    try:
        assert not (killed / "metrics.json").exists()
        if interrupt.startswith("Ctrl-C"):
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(pid, getattr(signal, interrupt.split()[0]))
    finally:
        os.kill(pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=120)
    while Path(f"/proc/{pid}").exists():  # the stage ends on its own signal, maybe after DVC
        assert time.time() < deadline
        time.sleep(0.05)
    assert proc.returncode != 0, out
    assert f"failed to reproduce 'train@{started[1]}'" in out or "interrupted by the user" in out.lower(), out
    assert (trained.path / "runs" / started[0] / "metrics.json").exists()
    assert not (killed / "metrics.json").exists()
    # diagnose (and so plots_init) may or may not have run before the kill: DVC orders them freely
    assert trained.repro() - {"diagnose", "plots_init"} == {f"train@{started[1]}", "aggregate", "plots"}
    trained.run("git", "checkout", "params.yaml")
    trained.repro()


def test_a_second_repro_at_once_fails_with_the_lock_message(trained: Workspace) -> None:
    """DVC locks each output a running repro uses: a second repro fails at once, harmlessly."""
    trained.set_params(train={"epochs": 2})
    first = start_repro(trained)
    running_train_stages(first, 1)  # the first repro is inside a stage, holding its locks
    second = trained.run("dvc", "repro", check=False)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out
    assert second.returncode != 0
    assert "is busy, it is being blocked by:" in second.stderr and "dvc repro" in second.stderr
    assert trained.run("dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    trained.run("git", "checkout", "params.yaml")
    trained.repro()


def test_a_diverging_run_is_recorded_and_the_pipeline_goes_on(tmp_path: Path, mnist_dir: Path) -> None:
    repo = Workspace.create(tmp_path / "repo", mirror=str(mnist_dir), **SMALL_STUDY)
    repo.set_params(study={"initializers": ["he_normal", "zeros"], "seeds": [0]}, analysis={"reference": "zeros"},
                    train={"optimizer": "sgd", "learning_rate": 1e20, "epochs": 3})  # zeros' loss stays finite
    repo.repro()
    he = json.loads((repo.path / "runs/he_normal-0/metrics.json").read_text())
    assert he["diverged"] is True and he["epochs_completed"] < 3
    summary = json.loads((repo.path / "metrics/summary.json").read_text())["initializers"]
    assert {k: v for k, v in summary["he_normal"].items() if k != "init"} == {"runs": 1, "diverged": 1}
    assert summary["zeros"]["diverged"] == 0 and summary["zeros"]["rank"] == 1
    shown = repo.run("dvc", "metrics", "show", "--json").stdout
    assert json.loads(shown) and "NaN" not in shown
    assert set(pd.read_csv(repo.path / "metrics/epochs.csv").initializer) == {"zeros"}  # no curve of he_normal
    assert (repo.path / "plots/val_loss.png").stat().st_size > 0
    repo.set_params(train={"learning_rate": 1e38})  # now every run diverges: the plots still render, empty
    repo.repro()
    summary = json.loads((repo.path / "metrics/summary.json").read_text())["initializers"]
    assert [entry["diverged"] for entry in summary.values()] == [1, 1]
    assert pd.read_csv(repo.path / "metrics/epochs.csv").empty
    assert all(png.stat().st_size > 0 for png in (repo.path / "plots").glob("*.png"))


def test_a_failed_download_in_repro_keeps_the_data_it_had(trained: Workspace, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = trained.path / "data/raw/mnist"
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    monkeypatch.delitem(trained.env, MIRROR_ENV)
    trained.set_params(data={"sources": {"mnist": [str(tmp_path / "nowhere")]}})
    result = trained.run("dvc", "repro", check=False)
    trained.run("git", "checkout", "params.yaml")
    assert result.returncode != 0 and "could not fetch" in result.stderr
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    # check_params passed the changed params before the download failed, so it checks them again;
    # the data is what dvc.lock records, so nothing else runs
    assert trained.repro() == {"check_params"}


def test_corrupt_mirror_is_rejected_by_the_download_stage(tmp_path: Path, mnist_dir: Path) -> None:
    mirror = tmp_path / "mirror"
    shutil.copytree(mnist_dir, mirror)
    (mirror / LABELS).write_bytes((mnist_dir / LABELS).read_bytes()[:-10])
    folder = write_params(tmp_path / "work", data={"sources": {"mnist": [str(mirror)]}})
    result = run_stage(folder, "download", "--out", "data/raw/mnist")
    assert result.returncode == 2
    assert f"could not fetch {LABELS}" in result.stderr and "checksum mismatch" in result.stderr
    assert MNIST[LABELS].removeprefix("sha256:") in result.stderr
    assert not (folder / "data/raw/mnist").exists()
    assert list((folder / "data/raw").iterdir()) == []


def test_all_sources_failing_lists_each_and_explains_the_mirror(tmp_path: Path, serve) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    sources = [serve(empty), "http://127.0.0.1:9/", str(tmp_path / "nowhere")]
    folder = write_params(tmp_path / "work", data={"sources": {"mnist": sources}})
    result = run_stage(folder, "download", "--out", "data/raw/mnist")
    assert result.returncode == 2
    for source, why in zip(sources, ("HTTP Error 404", "Connection refused", "No such file")):
        assert f"{source}: " in result.stderr and why in result.stderr
    assert "INITSTUDY_DATA_MIRROR" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_error_is_retried_then_the_next_source_used(tmp_path: Path, mnist_dir: Path, serve) -> None:
    hits = []

    class Failing(QuietHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_error(503)

    failing = serve(mnist_dir, Failing)
    assert fetch_file(LABELS, MNIST[LABELS], [failing, serve(mnist_dir)], tmp_path) != failing
    assert len(hits) == download.ATTEMPTS_PER_SOURCE


def test_a_response_cut_short_is_retried_then_the_next_source_used(tmp_path: Path, mnist_dir: Path, serve) -> None:
    hits = []

    class Cut(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"1000\r\n" + b"x" * 10)  # announces a 4,096-byte chunk, sends 10 bytes
            self.close_connection = True

    cut = serve(mnist_dir, Cut)
    assert fetch_file(LABELS, MNIST[LABELS], [cut, serve(mnist_dir)], tmp_path) != cut
    assert len(hits) == download.ATTEMPTS_PER_SOURCE
    with pytest.raises(DataError, match=r"IncompleteRead"):
        fetch_file(LABELS, MNIST[LABELS], [cut], tmp_path)
    assert not list(tmp_path.glob(f".{LABELS}.*"))  # no partial file left behind


def test_a_silent_server_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts connections, never answers
    monkeypatch.setattr(download, "TIMEOUT_SECONDS", 0.5)
    try:
        with pytest.raises(DataError, match="timed out"):
            fetch_file(LABELS, MNIST[LABELS], [f"http://127.0.0.1:{listener.getsockname()[1]}/"], tmp_path)
    finally:
        listener.close()


def test_an_interrupted_download_leaves_no_partial_file(tmp_path: Path, mnist_dir: Path, serve) -> None:
    class Slow(QuietHandler):
        def do_GET(self) -> None:
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(0, len(data), 4096):
                self.wfile.write(data[i:i + 4096])
                time.sleep(0.05)

    folder = write_params(tmp_path / "work", data={"sources": {"mnist": [serve(mnist_dir, Slow)]}})
    proc = subprocess.Popen([sys.executable, str(ROOT / "src/stages/download.py"), "--out", "data/raw/mnist"],
                            cwd=folder, env=command_env(folder), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not any(p.stat().st_size > 0 for p in (folder / "data/raw").rglob("*.part")):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert list((folder / "data/raw").iterdir()) == []


def test_staging_left_by_a_hard_kill_is_cleared_on_the_next_run(tmp_path: Path, mnist_dir: Path) -> None:
    stale = tmp_path / ".mnist.abc123"
    stale.mkdir()
    (stale / f".{LABELS}.x.part").write_bytes(b"half")
    fetch_dataset(MNIST, [str(mnist_dir)], tmp_path / "mnist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist"]


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (lambda d: (d / LABELS).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"12")),
         "IDX body holds 2 bytes, header promises 10"),
        (lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all"),
         "cannot read IDX file"),
    ],
)
def test_a_broken_data_file_is_named_by_the_train_stage(tmp_path: Path, mnist_dir: Path, broken, message) -> None:
    data = tmp_path / "data"
    shutil.copytree(mnist_dir, data)
    broken(data)
    folder = write_params(tmp_path / "work")
    result = run_stage(folder, "train", "--initializer", "zeros", "--seed", "0", "--data", str(data), "--out", "run")
    assert result.returncode == 2
    assert message in result.stderr and str(data) in result.stderr
    assert "Traceback" not in result.stderr and not (folder / "run").exists()
