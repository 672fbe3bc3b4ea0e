"""Bad input, broken data, diverging and interrupted runs, through the real entry points."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, QuietHandler, run_stage, tracked, write_params
from initstudy import datasets, download
from initstudy.aggregate import check_run
from initstudy.atomic import write_atomically
from initstudy.datasets import DATASETS, DataError, DataFile
from initstudy.download import DEADLINE_ENV, MIRROR_ENV, fetch_dataset, fetch_file
from initstudy.errors import StudyError
from workspace import Workspace, command_env

MNIST = DATASETS["mnist"].files
LABELS = "t10k-labels-idx1-ubyte.gz"


@pytest.fixture
def trained(one_machine: Workspace, tmp_path: Path) -> Workspace:
    """The session's small study, trained and committed, in a copy of the test's own: the
    test breaks it and checks that nothing was lost."""
    repo = one_machine.copy(tmp_path / "trained")
    repo.commit("trained")
    return repo


def outputs(repo: Workspace) -> dict[str, bytes]:
    files = [*repo.path.glob("runs/*/metrics.json"), *repo.path.glob("metrics/**/*.*"), *repo.path.glob("plots/**/*.png")]
    return {str(p.relative_to(repo.path)): p.read_bytes() for p in files}


@pytest.mark.training
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"study": {"initializers": ["zeros", "he_normall"]}}, "Did you mean 'he_normal'?"),
        ({"train": {"epochs": 0}}, "train.epochs = 0: Input should be greater than 0"),
        ({"train": {"optimizer": "rmsprop"}}, "Input should be 'adam' or 'sgd'"),
        ({"networks": {"mlp": {"hidden_units": [8], "dropout": 1.5}}}, "networks.mlp.dropout = 1.5: Input should be less than 1"),
        ({"study": {"seeds": [0, 0]}}, "repeated: 0"),
        ({"study": {"seeds": [4294967296]}}, "study.seeds = [4294967296]: seeds must be integers from 0 to 2**32 - 1"),
        # the published files' sizes (the small study's own mirror, with checksums of its own, may hold any)
        ({"data": {"train_samples": 70000, "checksums": {}}}, "data.train_samples = 70000: mnist has 60,000 training images"),
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
    assert trained.run("git", "status", "--porcelain").stdout == ""  # data/params.ok, committed, left in place


@pytest.mark.training
def test_a_misspelt_key_stops_repro_naming_the_right_one(trained: Workspace) -> None:
    params = (trained.path / "params.yaml").read_text()
    (trained.path / "params.yaml").write_text(params.replace("  epochs:", "  epoch:"))
    result = trained.run("dvc", "repro", check=False)
    trained.run("git", "checkout", "params.yaml")
    assert result.returncode != 0
    assert "train.epoch: unknown key" in result.stderr and "Did you mean 'epochs'?" in result.stderr


@pytest.mark.training
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


def stage_pid(marker: str, workspace: Path) -> int:
    """The process id of the running stage's Python process in `workspace` whose command line
    holds `marker` (a study running elsewhere on the machine may run the same command).

    DVC starts a stage as `$SHELL -c <cmd>`; dash (`/bin/sh`) stays as the parent of the
    command instead of replacing itself, so the Python process is picked, not that shell.
    """
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
            cwd = (proc / "cwd").resolve()
        except OSError:
            continue
        cmdline = " ".join(argv)
        if (Path(argv[0]).name.startswith("python") and "src/stages/" in cmdline and marker in cmdline
                and cwd == workspace.resolve()):
            return int(proc.name)
    raise AssertionError(f"no stage process with {marker!r}")


def as_terminal_job() -> None:
    """Ctrl-C reaches a terminal's job even where the test runner ignores SIGINT (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_repro(repo: Workspace) -> subprocess.Popen[str]:
    """`dvc repro` in its own process group, as a terminal's foreground job."""
    return tracked(subprocess.Popen(["dvc", "repro"], cwd=repo.path, env=repo.env, text=True, start_new_session=True,
                                    preexec_fn=as_terminal_job, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))


def running_train_stages(proc: subprocess.Popen[str], count: int) -> list[str]:
    """Read the repro's log until `count` train stages have started; return their keys."""
    started = []
    for line in proc.stdout:
        if line.startswith("Running stage 'train@"):
            started.append(line.split("@")[1].split("'")[0])
            if len(started) == count:
                return started
    raise AssertionError(f"repro ended after {len(started)} train stages")


@pytest.mark.training
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
    pid = stage_pid(f"--out runs/{started[1]}", trained.path)
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


@pytest.mark.training
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


@pytest.mark.training
def test_a_diverging_run_is_recorded_and_the_pipeline_goes_on(one_machine: Workspace, tmp_path: Path) -> None:
    repo = one_machine.copy(tmp_path / "repo")  # its data downloaded and prepared
    repo.set_params(study={"initializers": ["he_normal", "zeros"], "seeds": [0]}, analysis={"reference": "zeros"},
                    train={"optimizer": "sgd", "learning_rate": 3.0, "epochs": 3})  # zeros' loss stays near ln 10
    repo.repro()
    he = json.loads((repo.path / "runs/mlp-he_normal-0/metrics.json").read_text())
    assert he["diverged"] is True and he["epochs_completed"] < 3
    assert he["diverged_because"].startswith("non-finite loss in epoch")
    summary = json.loads((repo.path / "metrics/summary.json").read_text())["networks"]["mlp"]["initializers"]
    assert {k: v for k, v in summary["he_normal"].items() if k != "init"} == {"runs": 1, "diverged": 1}
    assert summary["zeros"]["diverged"] == 0 and summary["zeros"]["rank"] == 1
    shown = repo.run("dvc", "metrics", "show", "--json").stdout
    assert json.loads(shown) and "NaN" not in shown
    assert set(pd.read_csv(repo.path / "metrics/epochs.csv").initializer) == {"zeros"}  # no curve of he_normal
    assert (repo.path / "plots/epochs/val_loss.png").stat().st_size > 0
    repo.set_params(train={"learning_rate": 1e38})  # now every run diverges: the plots still render, empty
    repo.repro()
    summary = json.loads((repo.path / "metrics/summary.json").read_text())["networks"]["mlp"]["initializers"]
    assert [entry["diverged"] for entry in summary.values()] == [1, 1]
    assert pd.read_csv(repo.path / "metrics/epochs.csv").empty
    assert all(png.stat().st_size > 0 for png in (repo.path / "plots").glob("**/*.png"))


@pytest.mark.training
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
    assert MNIST[LABELS].checksum.removeprefix("sha256:") in result.stderr
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
    while not any(p.stat().st_size > 0 for p in (folder / "data/raw").rglob("*.tmp.gz")):
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
def test_a_broken_data_file_is_named_by_the_prepare_stage(tmp_path: Path, mnist_dir: Path, broken, message) -> None:
    data = tmp_path / "data"
    shutil.copytree(mnist_dir, data)
    broken(data)
    folder = write_params(tmp_path / "work")
    result = run_stage(folder, "prepare", "--raw", str(data), "--out", "prepared")
    assert result.returncode == 2
    assert message in result.stderr and str(data) in result.stderr
    assert "Traceback" not in result.stderr and not (folder / "prepared").exists()


def test_a_damaged_prepared_array_is_named_by_the_train_stage(tmp_path: Path, mnist_prepared: Path) -> None:
    data = tmp_path / "prepared"
    shutil.copytree(mnist_prepared, data)
    (data / "y_train.npy").write_bytes((data / "y_train.npy").read_bytes()[:1000])
    folder = write_params(tmp_path / "work")
    result = run_stage(folder, "train", "--network", "mlp", "--initializer", "zeros", "--seed", "0",
                       "--data", str(data), "--out", "run", "--log", "log.json")
    assert result.returncode == 2
    assert f"{data / 'y_train.npy'}: cannot load the prepared mnist data" in result.stderr
    assert "`dvc repro --force prepare`" in result.stderr
    assert "Traceback" not in result.stderr and not (folder / "run").exists()


@pytest.mark.training
def test_an_empty_or_missing_params_file_stops_dvc_first_and_check_params_names_it(trained: Workspace) -> None:
    before = outputs(trained)
    params = trained.path / "params.yaml"
    for damage, message in ((lambda: params.write_text(""), "params.yaml is empty; it needs the sections data, "
                             "study, initializers, networks, train, probes, diagnostics, analysis, plots"),
                            (params.unlink, f"params.yaml does not exist in {trained.path}")):
        damage()
        result = trained.run("dvc", "repro", check=False)
        check = run_stage(trained.path, "check_params")
        trained.run("git", "checkout", "params.yaml")
        assert result.returncode != 0 and "Could not find 'study.networks'" in result.stderr
        assert "Running stage" not in result.stdout
        assert check.returncode == 2 and f"error: {message}" in check.stderr
        assert "restore it with `git checkout params.yaml`" in check.stderr
    assert outputs(trained) == before


@pytest.mark.training
def test_the_largest_seed_trains(tmp_path: Path, mnist_prepared: Path) -> None:
    """study.seeds takes seeds up to 2**32 - 1, and each of them trains."""
    folder = write_params(tmp_path, data={"train_samples": 500, "val_samples": 100}, train={"epochs": 1})
    result = run_stage(folder, "train", "--network", "mlp", "--initializer", "he_normal", "--seed", str(2**32 - 1),
                       "--data", str(mnist_prepared), "--out", "run", "--log", "log.json")
    assert result.returncode == 0, result.stderr
    assert json.loads((folder / "run/metrics.json").read_text())["seed"] == 2**32 - 1


@pytest.mark.training
def test_a_damaged_history_stops_aggregate_until_dvc_checkout_restores_it(trained: Workspace) -> None:
    history = trained.path / "runs/mlp-he_normal-0/history.csv"
    original, lock, before = history.read_bytes(), (trained.path / "dvc.lock").read_bytes(), outputs(trained)
    history.write_bytes(original[: len(original) // 2])  # as a crash or a bad copy leaves it
    result = trained.run("dvc", "repro", "-s", "aggregate", check=False)
    assert result.returncode != 0
    assert ("error: run runs/mlp-he_normal-0 is damaged: history.csv ends in the middle of a line. "
            "Restore it from DVC's cache with `dvc checkout --force runs/mlp-he_normal-0`, or train it again with "
            "`dvc repro --force --single-item train@mlp-he_normal-0`") in result.stderr
    # DVC removes a stage's outputs before running it; nothing else changed, nothing was half written
    assert (trained.path / "dvc.lock").read_bytes() == lock
    assert all(before[name] == content for name, content in outputs(trained).items())
    trained.run("dvc", "checkout", "--force", "runs/mlp-he_normal-0")
    assert history.read_bytes() == original
    assert trained.repro() == {"aggregate"}
    assert outputs(trained) == before


@pytest.mark.training
@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda h: h.drop(columns=["val_loss", "loss"]), "history.csv lacks the column(s) loss, val_loss"),
        (lambda h: h.iloc[:0], "history.csv holds 0 epochs, metrics.json says 1 were completed"),
        (lambda h: h.assign(epoch=h.epoch + 1), "history.csv's epochs are not numbered 0 to 0 in order"),
        (lambda h: h.assign(val_accuracy=0.5), "its last val_accuracy is 0.5 in history.csv but 0."),
    ],
)
def test_a_run_whose_history_disagrees_with_its_metrics_is_refused(one_machine: Workspace, tmp_path: Path,
                                                                     damage, problem) -> None:
    run = tmp_path / "mlp-he_normal-0"
    shutil.copytree(one_machine.path / "runs/mlp-he_normal-0", run)
    history = pd.read_csv(run / "history.csv")
    history.assign(epoch_seconds=1.5).to_csv(run / "history.csv", index=False)
    check_run(run)  # intact, with or without a timing column
    damage(history).to_csv(run / "history.csv", index=False)
    with pytest.raises(StudyError) as info:
        check_run(run)
    assert str(info.value).startswith(f"run {run} is damaged: {problem}")
    assert "dvc repro --force --single-item train@mlp-he_normal-0" in str(info.value)


# A PNG writer that dies (SIGKILL) halfway, run before a stage: a hard kill in mid-write.
KILL_MID_PNG = """
import os, runpy, signal, sys
from PIL import Image, PngImagePlugin
def half(image, fp, filename):
    fp.write(b"\\x89PNG")
    fp.flush()
    os.kill(os.getpid(), signal.SIGKILL)
Image.SAVE["PNG"] = half
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.training
def test_a_plot_stage_killed_mid_png_leaves_every_plot_whole(trained: Workspace) -> None:
    before = outputs(trained)
    killed = subprocess.run([sys.executable, "-c", KILL_MID_PNG, "src/stages/plots.py", "--metrics", "metrics",
                             "--out", "plots"], cwd=trained.path, env=trained.env, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left, = [p for p in (trained.path / "plots").iterdir() if p.name.startswith(".")]  # the folder being drawn
    half, = [p for p in left.iterdir() if p.name.startswith(".")]
    assert left.name.startswith(".comparison.") and half.stat().st_size == 4  # its half-written temporary file
    after = {name: data for name, data in outputs(trained).items() if not name.startswith("plots/.")}
    assert after == before
    rerun = run_stage(trained.path, "plots", "--metrics", "metrics", "--out", "plots")
    assert rerun.returncode == 0, rerun.stderr
    assert outputs(trained) == before  # the same plots, and the leftover cleared
    assert trained.run("git", "status", "--porcelain", "plots").stdout == ""


def test_an_atomic_write_that_fails_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")

    def fails(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp.name.endswith(".keras")  # Keras and matplotlib go by the suffix
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, fails)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]


ENDLESS_CAP = 128 << 20  # an endless source stops here, so that a client that never stops cannot fill the disk
SOCKET_SLACK = 48 << 20  # bytes sent but never read: at most the sockets' buffers (net.ipv4.tcp_rmem, tcp_wmem)


def endless_handler(sent: list[int]) -> type[QuietHandler]:
    """A handler that answers every request with bytes that do not end, counting them in `sent`."""

    class Endless(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            block = bytes(1 << 16)
            try:
                for _ in range(ENDLESS_CAP // len(block)):
                    self.wfile.write(block)
                    sent.append(len(block))
            except OSError:  # the client hung up
                pass

    return Endless


def test_an_endless_source_is_cut_off_and_the_next_one_used(tmp_path: Path, mnist_dir: Path, serve) -> None:
    sent: list[int] = []
    endless = serve(tmp_path, endless_handler(sent))
    folder = write_params(tmp_path / "work", data={"sources": {"mnist": [endless, str(mnist_dir)]}})
    start = time.monotonic()
    result = run_stage(folder, "download", "--out", "data/raw/mnist")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 60
    for name, file in MNIST.items():
        assert f"{name}: {endless} failed: sent more than the {file.size:,} bytes of {name}: cut off" in result.stderr
        assert f"{name}: ok (sha256 verified) from {mnist_dir}" in result.stdout
    assert sum(sent) < sum(file.size for file in MNIST.values()) + len(MNIST) * SOCKET_SLACK
    assert sorted(p.name for p in (folder / "data/raw/mnist").iterdir()) == sorted(MNIST)


def test_a_file_of_unknown_size_is_cut_off_at_the_limit(tmp_path: Path, serve,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "UNKNOWN_SIZE_LIMIT", 100_000)
    sent: list[int] = []
    endless = serve(tmp_path, endless_handler(sent))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DataError, match=r"sent more than 100,000 bytes for x.gz, the limit for a file whose "
                                        r"checksum data.checksums sets \(its size is unknown\): cut off"):
        fetch_file("x.gz", DataFile("sha256:" + "0" * 64, None), [endless], dest)
    assert list(dest.iterdir()) == [] and sum(sent) < 100_000 + SOCKET_SLACK


def test_a_trickling_source_is_cut_off_at_the_deadline(tmp_path: Path, mnist_dir: Path, serve,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    class Trickle(QuietHandler):
        """Sends a byte every 10 ms: never silent long enough for the socket's timeout."""

        def do_GET(self) -> None:
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    time.sleep(0.01)
            except OSError:  # the client hung up
                pass

    trickle = serve(mnist_dir, Trickle)
    monkeypatch.setenv(DEADLINE_ENV, "0.5")
    folder = write_params(tmp_path / "work", data={"sources": {"mnist": [trickle, str(mnist_dir)]}})
    start = time.monotonic()
    result = run_stage(folder, "download", "--out", "data/raw/mnist")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 30
    for name in MNIST:
        assert f"{name}: {trickle} failed: took longer than 0.5 s for {name} (" in result.stderr
        assert f"allow more with {DEADLINE_ENV}=<seconds>" in result.stderr
    assert sorted(p.name for p in (folder / "data/raw/mnist").iterdir()) == sorted(MNIST)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_downloaded_data_has_the_modes_the_umask_gives(tmp_path: Path, mnist_dir: Path, umask: int) -> None:
    folder = write_params(tmp_path / "work", data={"sources": {"mnist": [str(mnist_dir)]}})
    previous = os.umask(umask)
    try:
        result = run_stage(folder, "download", "--out", "data/raw/mnist")
    finally:
        os.umask(previous)
    assert result.returncode == 0, result.stderr
    data = folder / "data/raw/mnist"
    assert stat.S_IMODE(data.stat().st_mode) == 0o777 & ~umask
    assert {stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()} == {0o666 & ~umask}


@pytest.mark.training
def test_damaged_compilation_cache_entries_are_replaced(tmp_path: Path, mnist_prepared: Path) -> None:
    """JAX warns of an entry it cannot read, and compiles; the next stage reads the new entry."""
    folder = write_params(tmp_path / "work", data={"train_samples": 500, "val_samples": 100}, train={"epochs": 1})
    cache = tmp_path / "compiled"

    def train() -> subprocess.CompletedProcess[str]:
        result = run_stage(folder, "train", "--network", "mlp", "--initializer", "he_normal", "--seed", "0",
                           "--data", str(mnist_prepared), "--out", "run", "--log", "log.json",
                           env={"JAX_COMPILATION_CACHE_DIR": str(cache)})
        assert result.returncode == 0, result.stderr
        return result

    train()
    metrics = (folder / "run/metrics.json").read_bytes()
    entries = sorted(cache.glob("*-cache"))
    assert entries
    for entry in entries:
        entry.write_bytes(b"damaged")
    warning = "Error reading persistent compilation cache entry"
    assert warning in train().stderr
    assert warning not in train().stderr
    assert (folder / "run/metrics.json").read_bytes() == metrics


@pytest.fixture
def small_disk(tmp_path: Path):
    """Put a folder on a tmpfs of its own (`megabytes` large) with what it holds; afterwards
    move what it then holds back onto the folder's own disk."""
    mounted: list[Path] = []

    def mount(path: Path, megabytes: int = 2) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        held = shutil.move(path, tmp_path / f"held-{len(mounted)}")
        path.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            path.rmdir()
            shutil.move(held, path)
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        shutil.copytree(held, path, dirs_exist_ok=True)
        shutil.rmtree(held)
        mounted.append(path)
        return path

    yield mount
    for i, path in enumerate(reversed(mounted)):
        (path / ".filler").unlink(missing_ok=True)
        kept = shutil.copytree(path, tmp_path / f"kept-{i}")
        subprocess.run(["umount", str(path)], check=True)
        shutil.copytree(kept, path, dirs_exist_ok=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill the file system of `disk` up to `leave` bytes free."""
    filler = disk / ".filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


def assert_disk_full_message(stderr: str, folder: Path) -> None:
    assert f"error: no space left on the device of {folder.resolve()}" in stderr, stderr
    assert " needs " in stderr and "Nothing was lost" in stderr and "run `dvc repro` again" in stderr
    assert "Traceback" not in stderr


@pytest.mark.training
def test_a_full_disk_under_runs_is_explained_and_repro_recovers(trained: Workspace, small_disk,
                                                                 tmp_path: Path) -> None:
    """runs/ on a tmpfs with almost no room left: the new run's stage names the folder, the
    room a run takes (its neighbours' size) and that nothing was lost, and leaves no
    temporary file (Keras' included); once there is room, a plain `dvc repro` finishes."""
    before = outputs(trained)
    runs = small_disk(trained.path / "runs", megabytes=32)
    saved = {str(p.relative_to(runs)): p.read_bytes() for p in runs.glob("*/*")}
    filler = fill(runs, leave=16_000)
    trained.set_params(study={"seeds": [0, 1, 9]})  # a seed no other test trains: nothing to restore
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    trained.env["TMPDIR"] = str(temporary)
    try:
        result = trained.run("dvc", "repro", check=False)
    finally:
        del trained.env["TMPDIR"]
    assert result.returncode != 0 and "Running stage 'train@mlp-" in result.stdout
    assert_disk_full_message(result.stderr, runs)
    estimate = re.search(r"needs about ([\d.]+) MB \(the largest output like it beside it\)", result.stderr)
    largest = max(sum(f.stat().st_size for f in run.rglob("*") if f.is_file()) for run in runs.glob("mlp-*-[01]"))
    assert estimate and float(estimate[1]) == round(largest / 1e6, 1), result.stderr  # a run's room, not a guess
    assert list(temporary.iterdir()) == []
    new = {f"mlp-{init}-9" for init in ("zeros", "he_normal")}
    assert {p.name for p in runs.iterdir() if p.name != ".filler" and not (p / "metrics.json").exists()} <= new
    assert not [name for name in new if name in (trained.path / "dvc.lock").read_text()]  # the failed run: not locked
    assert not [p for p in runs.rglob("*") if ".tmp" in p.name]
    assert outputs(trained) == before
    filler.unlink()
    assert {f"train@{name}" for name in new} <= trained.repro()
    assert trained.repro() == set()
    trained.run("git", "checkout", "params.yaml")
    trained.repro()
    assert {name: (runs / name).read_bytes() for name in saved} == saved
    for name in new:
        shutil.rmtree(runs / name)


@pytest.mark.training
@pytest.mark.parametrize("stage", ["aggregate", "plots"])
def test_a_full_disk_under_an_output_folder_is_explained(trained: Workspace, small_disk, stage: str) -> None:
    """aggregate and plots, each writing into a folder on a full tmpfs: the message, and no
    file left half-written or temporary."""
    out = small_disk(trained.path.parent / f"full-{stage}")
    shutil.copytree(trained.path / "metrics", out, dirs_exist_ok=True)
    (out / "summary.json").unlink()
    fill(out, leave=0)
    args = {"aggregate": ["--runs", "runs", "--init", "metrics/init_layers.csv"], "plots": ["--metrics", "metrics"]}[stage]
    result = run_stage(trained.path, stage, *args, "--out", str(out))
    assert result.returncode == 2
    assert_disk_full_message(result.stderr, out)
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_a_full_disk_during_the_download_is_explained(tmp_path: Path, mnist_dir: Path, small_disk) -> None:
    """data/raw on a tmpfs smaller than MNIST: the download stops at the disk (no other source
    is tried), says how much the dataset needs, and leaves no staging folder."""
    write_params(tmp_path)
    raw = small_disk(tmp_path / "data" / "raw")
    result = run_stage(tmp_path, "download", "--out", "data/raw/mnist", env={MIRROR_ENV: str(mnist_dir)})
    assert result.returncode == 2
    assert_disk_full_message(result.stderr, raw)
    assert "needs 11.6 MB (the dataset's files)" in result.stderr
    assert "from any source" not in result.stderr
    assert list(raw.iterdir()) == []
