"""Scaling out with DVC itself: shards trained by several clones and gathered through a
remote's run-cache or a shared cache, queued experiments, and the thread setting."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import SMALL_STUDY, run_stage, small_data, start, write_params
from initstudy.shards import parse_shard, share
from workspace import ROOT, Workspace

BIN = str(Path(sys.executable).parent)  # the Makefile's tools: this interpreter's
DEPLOY = ROOT / "deploy"
TRAIN = [f"train@mlp-{init}-{seed}" for init in ("zeros", "he_normal") for seed in (0, 1)]


@pytest.fixture(scope="module")
def published(origin, one_machine, tmp_path_factory) -> Workspace:
    """The study as main holds the committed ones: its dvc.lock, metrics and plots committed,
    its outputs in the author's cache only (no remote): one_machine's, its objects hard-linked
    (DVC writes in the cache it uses, and one_machine is read only, shared by every worker)."""
    folder = tmp_path_factory.mktemp("scale")
    author = shutil.copytree(one_machine.path / ".dvc" / "cache", folder / "author-cache", copy_function=os.link)
    workspace = origin.clone(folder / "published")
    workspace.run("dvc", "cache", "dir", "--local", str(author))
    assert not {stage for stage in workspace.repro("train") if stage.startswith("train@")}  # the author's, cached
    workspace.repro()
    workspace.commit("study results")
    return workspace


def with_environment(workspace: Workspace) -> Workspace:
    """Give `workspace` the project's environment as `make setup` leaves it: `.venv`, git-ignored."""
    (workspace.path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    with (workspace.path / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write(".venv\n")
    return workspace


def start_slurm_task(submit: Workspace, task: int, tasks: int, log: Path) -> subprocess.Popen:
    """deploy/slurm.sbatch as SLURM runs task `task`, submitted from `submit` as the script says."""
    commit = submit.run("git", "rev-parse", "HEAD").stdout.strip()
    env = dict(submit.env, SLURM_SUBMIT_DIR=str(submit.path), SLURM_ARRAY_JOB_ID="7", SLURM_ARRAY_TASK_ID=str(task),
               SLURM_CPUS_PER_TASK="1", SHARDS=str(tasks), COMMIT=commit, TMPDIR=str(log.parent))
    return start(["bash", str(DEPLOY / "slurm.sbatch")], submit.path, env, log)


def start_kubernetes_pod(image: Workspace, index: int, pods: int, log: Path) -> subprocess.Popen:
    """The container of deploy/kubernetes-job.yaml as pod `index` of `pods` runs it, in `image`'s checkout."""
    job = yaml.safe_load((DEPLOY / "kubernetes-job.yaml").read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = dict(image.env, **{var["name"]: var["value"] for var in container["env"]})
    env.update(JOB_COMPLETION_INDEX=str(index), SHARDS=str(pods))
    return start(container["command"], image.path, env, log)


def finish(process: subprocess.Popen, log: Path) -> str:
    assert process.wait(timeout=900) == 0, log.read_text()
    return log.read_text()


def trained(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(train@[^']+)'", output))


def restored(output: str) -> set[str]:
    return set(re.findall(r"Stage '(train@[^']+)' is cached - skipping run", output))


def results(workspace: Workspace) -> dict[str, bytes]:
    """Every file under metrics/."""
    root = workspace.path / "metrics"
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    assert {"runs.csv", "summary.json", "headline/mlp.json"} <= set(files)
    return files


def remote_objects(remote: Path) -> dict[str, int]:
    """The data objects in a local-folder remote, with their inode numbers."""
    return {str(p.relative_to(remote)): p.stat().st_ino for p in (remote / "files").rglob("*") if p.is_file()}


def assert_consistent(remote: Path) -> int:
    """Every run-cache entry on `remote` has all its output files there; return the entries' count."""
    entries = [p for p in (remote / "runs").rglob("*") if p.is_file()]
    for entry in entries:
        for out in yaml.safe_load(entry.read_text())["outs"]:
            obj = remote / "files" / "md5" / out["md5"][:2] / out["md5"][2:]
            assert obj.is_file(), f"{entry}: {out['path']} has no object on the remote"
            if out["md5"].endswith(".dir"):
                for item in json.loads(obj.read_text()):
                    assert (remote / "files" / "md5" / item["md5"][:2] / item["md5"][2:]).is_file()
    return len(entries)


def test_shards_split_the_training_stages_deterministically():
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "1", "a/b", "1/0"):
        with pytest.raises(Exception, match="expected i/N"):
            parse_shard(bad)
    stages = [f"train@s{i}" for i in range(7)]
    shards = [share(stages, i, 3) for i in (1, 2, 3)]
    assert sorted(sum(shards, [])) == sorted(stages)
    assert shards[0] == ["train@s0", "train@s3", "train@s6"]


def test_shard_lists_cover_every_training_stage_once(origin, tmp_path):
    team = origin.clone(tmp_path / "team")  # DVC writes its lock and index in the repo it runs in: origin is read only
    lists = [team.run("python", "-m", "initstudy.shards", f"{i}/3", "--list").stdout.split() for i in (1, 2, 3)]
    assert sorted(sum(lists, [])) == sorted(TRAIN)
    idle = team.run("python", "-m", "initstudy.shards", "5/5").stdout  # more workers than runs
    assert idle.strip() == "shard 5/5: 0 stage(s)"
    bad = team.run("make", "-s", "train", "SHARD=4/3", f"BIN={BIN}", check=False)
    assert bad.returncode != 0 and "shard '4/3': expected i/N" in bad.stderr


@pytest.mark.training
def test_two_workers_fill_a_remote_and_a_collaborator_trains_nothing(origin, one_machine, tmp_path):
    remote = tmp_path / "remote"
    team = origin.clone(tmp_path / "team")
    team.run("dvc", "remote", "add", "-d", "team", str(remote))
    team.commit("team remote")
    with_environment(team)
    logs = [tmp_path / f"task{i}.log" for i in (1, 2)]
    running = [start_slurm_task(team, i, 2, log) for i, log in enumerate(logs, 1)]
    outputs = [finish(process, log) for process, log in zip(running, logs)]
    shards = [trained(output) for output in outputs]
    assert shards[0] | shards[1] == set(TRAIN) and not shards[0] & shards[1]
    assert assert_consistent(remote) >= len(TRAIN)

    collaborator = team.clone(tmp_path / "collaborator")
    output = collaborator.run("dvc", "repro", "--pull").stdout
    assert not trained(output), output
    assert restored(output) == set(TRAIN)
    assert {"aggregate", "plots"} <= set(re.findall(r"Running stage '([^']+)'", output))
    assert results(collaborator) == results(one_machine)


@pytest.mark.training
def test_a_published_study_is_pulled_not_trained(one_machine, tmp_path):
    """The team workflow of docs/scaling.md: push with the run-cache, commit; a collaborator pulls."""
    one_machine = one_machine.copy(tmp_path / "one-machine")
    one_machine.run("dvc", "remote", "add", "-d", "team", str(tmp_path / "remote"))
    one_machine.run("dvc", "push", "--run-cache")
    one_machine.commit("study results")
    collaborator = one_machine.clone(tmp_path / "collaborator")
    collaborator.run("dvc", "pull")
    assert collaborator.repro() == set()
    assert "up to date" in collaborator.run("dvc", "status").stdout
    assert results(collaborator) == results(one_machine)


@pytest.mark.training
def test_killed_worker_leaves_the_remote_consistent(origin, tmp_path):
    remote = tmp_path / "remote"
    team = origin.clone(tmp_path / "team")
    team.run("dvc", "remote", "add", "-d", "team", str(remote))
    team.commit("team remote")
    first, second = share(TRAIN, 1, 2)
    log = tmp_path / "killed.log"
    worker = start_kubernetes_pod(with_environment(team.clone(tmp_path / "killed")), 0, 2, log)
    deadline = time.monotonic() + 600
    while f"Running stage '{second}'" not in log.read_text():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    os.killpg(worker.pid, signal.SIGKILL)  # the machine is gone, mid-training
    worker.wait()
    assert assert_consistent(remote) >= 1
    before = remote_objects(remote)

    log = tmp_path / "rerun.log"
    output = finish(start_kubernetes_pod(with_environment(team.clone(tmp_path / "rerun")), 0, 2, log), log)
    assert restored(output) == {first} and trained(output) == {second}
    after = remote_objects(remote)
    assert {name: after[name] for name in before} == before  # nothing already there was written again
    assert len(after) > len(before)
    assert assert_consistent(remote) >= 2


def scaling_block(after: str) -> str:
    """The first code block of docs/scaling.md after the text `after`."""
    page = (ROOT / "docs" / "scaling.md").read_text()
    return re.search(r"```\w*\n(.*?)```", page[page.index(after):], re.S)[1]


@pytest.mark.training
def test_a_fresh_clone_retrains_the_committed_bytes_and_shares_them_through_a_remote(published, tmp_path):
    """Retraining a committed study on another machine reproduces the md5s of its dvc.lock, so
    what one clone pushes, another pulls: `dvc pull && dvc repro` then trains nothing."""
    retrainer = published.clone(tmp_path / "retrainer")  # its own, empty cache: everything is trained
    assert set(TRAIN) <= retrainer.repro()
    assert retrainer.run("git", "status", "--porcelain").stdout == ""  # dvc.lock, metrics, plots: the same bytes
    for workspace in (retrainer, collaborator := published.clone(tmp_path / "collaborator")):
        workspace.run("dvc", "remote", "add", "--local", "-d", "team", str(tmp_path / "remote"))
    retrainer.run("dvc", "push")
    collaborator.run("dvc", "pull")
    assert collaborator.repro() == set()
    assert results(collaborator) == results(published)


@pytest.mark.training
def test_workers_sharing_one_cache_need_no_remote(published, tmp_path):
    """The recipe of docs/scaling.md for several workers on one machine, run as written on a committed study."""
    gatherer = with_environment(published.clone(tmp_path / "gatherer"))
    gatherer.env["TMPDIR"] = str(tmp_path)  # where the recipe's `mktemp -d` makes the workers' clones
    output = gatherer.run("bash", "-c", scaling_block("**One machine, several workers.**")).stdout
    assert trained(output) == set(TRAIN)
    output = gatherer.run("dvc", "repro").stdout
    assert not trained(output), output
    assert gatherer.run("git", "status", "--porcelain").stdout == ""
    assert results(gatherer) == results(published)


MULTICORE = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
                               reason="needs 2 CPUs to compare thread counts")


@pytest.mark.training
@MULTICORE
@pytest.mark.parametrize("backend", ["jax"])  # on TensorFlow, oneDNN's AVX kernels split sums by thread
def test_thread_count_does_not_change_results(tmp_path, mnist_prepared, backend):
    """One thread or all of them: the same run, bit for bit."""
    outputs = {}
    for threads in ("1", ""):
        folder = write_params(tmp_path / f"threads{threads or 'all'}", data={"train_samples": 2000, "val_samples": 500},
                              train={"epochs": 2, "backend": backend})
        env = {"INITSTUDY_THREADS": threads}
        result = run_stage(folder, "train", "--network", "mlp", "--initializer", "glorot_uniform", "--seed", "3",
                           "--data", str(mnist_prepared), "--out", "run", "--log", "log.json", env=env)
        assert result.returncode == 0, result.stderr
        outputs[threads] = {name: (folder / "run" / name).read_bytes() for name in ("history.csv", "metrics.json")}
    assert outputs["1"] == outputs[""]


@MULTICORE
@pytest.mark.parametrize("threads", ["1", "2"])
def test_thread_setting_sizes_the_xla_pool(threads):
    probe = ("import os, collections\n"
             "from initstudy.backend import use_backend\n"
             "use_backend('jax', 'AVX')\n"
             "import jax.numpy as jnp\n"
             "(jnp.ones((512, 512)) @ jnp.ones((512, 512))).block_until_ready()\n"
             "tasks = os.listdir('/proc/self/task')\n"
             "print(sum(open(f'/proc/self/task/{t}/comm').read().strip() == 'tf_XLAEigen' for t in tasks))\n"
             "print(all(os.sched_getaffinity(int(t)) == os.sched_getaffinity(0) for t in tasks))\n")
    env = dict(os.environ, INITSTUDY_THREADS=threads)
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    pool, unpinned = result.stdout.split()
    assert int(pool) == int(threads)
    assert unpinned == "True"


def test_bad_thread_setting_is_refused(tmp_path, mnist_prepared):
    folder = write_params(tmp_path, data={"train_samples": 200, "val_samples": 100})
    result = run_stage(folder, "train", "--network", "mlp", "--initializer", "zeros", "--seed", "0",
                       "--data", str(mnist_prepared), "--out", "run", "--log", "log.json", env={"INITSTUDY_THREADS": "all"})
    assert result.returncode == 2 and "INITSTUDY_THREADS='all'" in result.stderr


@pytest.mark.training
def test_queued_experiments_run_in_parallel_and_match_a_plain_run(origin, tmp_path):
    """Two queued experiments at once (-j 2), both shown by `dvc exp show`; a plain run of the same
    params as one of them trains again and gets its metrics; `dvc metrics diff` sees the other's
    difference. Each trains one seed of the two initializers: two runs, not four."""
    workspace = origin.clone(tmp_path / "queue")
    workspace.env["INITSTUDY_THREADS"] = "1"  # the queue's workers take the environment of `dvc queue start`
    two_epochs = ["-S", "train.epochs=2", "-S", "study.seeds=[0]"]
    workspace.run("dvc", "exp", "run", "--queue", "-n", "two-epochs", *two_epochs)
    workspace.run("dvc", "exp", "run", "--queue", "-n", "seed-five", "-S", "study.seeds=[5]")
    workspace.run("dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while re.search(r"\b(Queued|Running)\b", status := workspace.run("dvc", "queue", "status").stdout):
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert re.search(r"two-epochs.*Success", status) and re.search(r"seed-five.*Success", status), status
    workspace.run("dvc", "queue", "stop")
    while "Worker status: 0 active, 0 idle" not in workspace.run("dvc", "queue", "status").stdout:
        assert time.monotonic() < deadline
        time.sleep(1)

    shown = workspace.run("dvc", "exp", "show", "--csv", "--drop", ".*[./]|runs").stdout
    rows = {row["Experiment"]: row for row in csv.DictReader(io.StringIO(shown)) if row["Experiment"]}
    assert set(rows) == {"two-epochs", "seed-five"}
    for row in rows.values():
        assert 0 < float(row["he_normal"]) <= 1 and 0 < float(row["zeros"]) <= 1

    plain = workspace.run("dvc", "exp", "run", "--force", "-n", "plain", *two_epochs).stdout
    # trained again, not restored from the queued run's run-cache entries
    assert trained(plain) == {f"train@mlp-{init}-0" for init in ("zeros", "he_normal")}, plain

    def diff(a: str, b: str) -> dict:
        return json.loads(workspace.run("dvc", "metrics", "diff", a, b, "--json",
                                        "--targets", "metrics/headline", "metrics/summary.json").stdout)

    assert diff("two-epochs", "plain") == {}
    assert diff("two-epochs", "seed-five")  # the comparison sees a difference where there is one


def made_setup() -> list[str]:
    """make's options for this environment, its setup taken as done (never reinstalled from a copy)."""
    venv = Path(sys.executable).parent.parent
    return [f"VENV={venv}", "-o", f"{venv}/.installed"]


@pytest.mark.training
def test_make_study_spreads_the_training_over_workers_and_dvc_then_trains_nothing(origin, one_machine,
                                                                                   tmp_path) -> None:
    """`make study` (initstudy.parallel) with two workers: the one-worker results bit for bit,
    an uncommitted change of params honoured, the worktrees gone, every run's log gathered."""
    workspace = origin.clone(tmp_path / "make-study")
    workspace.set_params(study={"seeds": [0, 1, 2]})  # not committed: the workers must see it
    result = workspace.run("make", "-s", *made_setup(), "study", "WORKERS=2")
    assert "worker 1/2: 3 stage(s), 1 thread(s)" in result.stdout and "worker 2/2: 3 stage(s)" in result.stdout
    trained = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("[")
               and "Running stage 'train@" in line}
    assert trained == {f"train@mlp-{init}-{seed}" for init in ("zeros", "he_normal") for seed in (0, 1, 2)}
    assert "Running stage 'train@" not in "\n".join(l for l in result.stdout.splitlines() if not l.startswith("["))
    assert workspace.repro() == set()
    lock = yaml.safe_load((workspace.path / "dvc.lock").read_text())["stages"]
    alone = yaml.safe_load((one_machine.path / "dvc.lock").read_text())["stages"]
    assert [name for name in lock if name.startswith("train@")] == [  # gathered in dvc.yaml's order
        f"train@mlp-{init}-{seed}" for init in ("zeros", "he_normal") for seed in (0, 1, 2)]
    for run in TRAIN:
        assert lock[run] == alone[run]  # as one `dvc repro` records it
        name = run.removeprefix("train@")
        for output in ("metrics.json", "history.csv", "model.keras"):
            assert (workspace.path / "runs" / name / output).read_bytes() == \
                (one_machine.path / "runs" / name / output).read_bytes(), (name, output)
    assert sorted(p.stem for p in (workspace.path / "logs").glob("*.json")) == sorted(
        f"mlp-{init}-{seed}" for init in ("zeros", "he_normal") for seed in (0, 1, 2))
    assert workspace.run("git", "worktree", "list").stdout.count("\n") == 1


@pytest.mark.training
def test_make_study_in_a_repo_without_a_commit_trains_with_one_worker_and_says_why(one_machine, tmp_path, small_mnist):
    """A worker is a worktree of HEAD: before the first commit there is none, so the study
    runs as one `dvc repro`, with a note, and gives the same runs."""
    workspace = Workspace.create(tmp_path / "uncommitted", mirror=str(small_mnist), **small_data(small_mnist, **SMALL_STUDY))
    result = workspace.run(sys.executable, "-m", "initstudy.parallel", "--workers", "2")
    assert "no git commit yet" in result.stderr and "training with one worker" in result.stderr
    assert "worker 1/2" not in result.stdout
    assert workspace.repro() == set()
    for run in TRAIN:
        name = run.removeprefix("train@")
        for output in ("metrics.json", "history.csv", "model.keras"):
            assert (workspace.path / "runs" / name / output).read_bytes() == \
                (one_machine.path / "runs" / name / output).read_bytes(), (name, output)


@pytest.mark.parametrize("target", ["study", "train"])
def test_make_checks_the_params_before_dvc_reads_them(origin, target: str, tmp_path) -> None:
    """A YAML alias bomb: DVC would expand it for minutes; check_params refuses it at once."""
    workspace = origin.clone(tmp_path / f"bomb-{target}")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    with (workspace.path / "params.yaml").open("a") as params:
        params.write(bomb)
    result = workspace.run("make", "-s", *made_setup(), target, check=False)
    assert result.returncode != 0
    assert "params.yaml" in result.stderr and "unknown key" in result.stderr and "Running stage" not in result.stdout


@pytest.mark.training
def test_make_sets_up_and_trains_in_a_path_with_spaces_and_non_ascii_letters(origin, one_machine, tmp_path) -> None:
    """The real `make setup` (its venv made, the packages found already installed: a .pth file
    points at this environment's) and `make train`, in a checkout at `a b/ü p`."""
    workspace = origin.clone(tmp_path / "a b" / "ü p")
    venv = workspace.path / ".venv"
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    site = next(Path(sys.executable).parent.parent.glob("lib/python*/site-packages"))
    next(venv.glob("lib/python*/site-packages")).joinpath("outer.pth").write_text(f"{site}\n")
    workspace.run("make", "-s", "setup")
    python = venv / "bin" / "python"
    alone = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # as a user's shell has it
    located = subprocess.run([str(python), "-c", "import initstudy; print(initstudy.__file__)"],
                             capture_output=True, text=True, check=True, cwd=tmp_path, env=alone)
    assert located.stdout.strip() == str(workspace.path / "src" / "initstudy" / "__init__.py")
    result = workspace.run("make", "-s", "train")
    assert trained(result.stdout) == set(TRAIN)
    for run in TRAIN:
        name = run.removeprefix("train@")
        assert (workspace.path / "runs" / name / "metrics.json").read_bytes() == \
            (one_machine.path / "runs" / name / "metrics.json").read_bytes()
    rest = workspace.repro()
    assert rest and not rest & set(TRAIN) and workspace.repro() == set()  # the stages after training, then none
