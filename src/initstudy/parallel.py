"""Reproduce the whole pipeline with its training stages spread over local workers: `make study`.

`dvc repro` runs one stage at a time, and one small training process cannot keep two cores
busy. This checks the params first (the project's messages, before DVC parses them) and
what dvc.lock keeps in the cache, repairing any damage (verify.py), runs the stages up to
the data, then gives the training stages that are not up to date to N
workers at once. Each worker is a git worktree of this checkout (HEAD plus the working
tree's changes) sharing its DVC cache, with cores/N compute threads, and reproduces its
share with `dvc repro`. Their runs are then entered in this checkout's dvc.lock (each
worker's entry, as DVC wrote it, in the order `dvc repro` would have written them) and
checked out of the shared cache, so that `dvc repro` here finds them up to date, trains
nothing, and runs the stages after training (restoring each run from the run-cache, as
`dvc repro` would, rewrites the whole dvc.lock after each: BENCHMARKS.md). The thread count
changes no result on JAX (docs/scaling.md, "Threads"), so the runs are the bits one worker
would make. Each worker checks the data out of the cache (it never downloads it again); a
line is printed for each run that finishes, and Ctrl-C stops the workers, removes their
worktrees and says what finished (supervise.py).

    python -m initstudy.parallel             # as many workers as CPUs
    python -m initstudy.parallel --workers 1 # plain `dvc repro`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from configobj import ConfigObj
from dvc.exceptions import DvcException
from dvc.repo import Repo
from dvc.utils.serialize import load_yaml, modify_yaml

from initstudy.atomic import write_json
from initstudy.errors import StudyError, stage_main
from initstudy.shards import GROUP, PREPARE, check_params, share, training_stages
from initstudy.supervise import (Child, Interrupted, Progress, catch_signals, dvc, exit_status, interrupted, run,
                                 shielded)
from initstudy.verify import cache_dir, verify


WORKERS_PREFIX = "initstudy-workers-"  # the temporary folder of the workers' worktrees
OWNER = "owner.json"  # in it: the process that made it, and its workers' process groups


def share_cache(tree: Path, cache: str) -> None:
    """Point the checkout `tree` at the DVC cache `cache` (`dvc cache dir --local`, written as
    UTF-8: DVC 3.67 writes its config as ASCII and fails on any other letter in the path)."""
    config = ConfigObj(str(tree / ".dvc" / "config.local"), encoding="utf-8")
    config["cache"] = {"dir": cache}
    config.write()


def make_worktree(path: Path, cache: str) -> None:
    """A git worktree of HEAD at `path`, with this checkout's uncommitted changes and DVC cache,
    its dvc.lock without training stages (their entries come from the worker's own runs), and
    the prepared data checked out of the cache (a worker never downloads it again)."""
    run("git", "worktree", "add", "--quiet", "--detach", str(path), "HEAD")
    changed = run("git", "ls-files", "-z", "--modified", "--others", "--exclude-standard", capture=True)
    deleted = set(run("git", "ls-files", "-z", "--deleted", capture=True).split("\0"))
    for name in filter(None, changed.split("\0")):
        target = path / name
        if name in deleted:
            target.unlink(missing_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(name, target)
    share_cache(path, cache)
    lock = path / "dvc.lock"
    if lock.is_file():  # a worker needs the entries before training only; DVC parses the lock once per target
        with modify_yaml(str(lock)) as data:
            for name in [name for name in data.get("stages", {}) if name.startswith(f"{GROUP}@")]:
                del data["stages"][name]
    with contextlib.suppress(DvcException):  # what it cannot check out, the worker's `dvc repro` makes
        checkout(path, PREPARE, with_deps=True)  # else it runs them, as before


def checkout(root: Path, target: str, **options: bool) -> None:
    """`dvc checkout --quiet <target>` run in the checkout at `root` (where `target` is found), in
    this process: one DVC start fewer (a signal waits until it is done)."""
    with shielded(), contextlib.chdir(root), Repo() as repo:
        repo.checkout(targets=[target], **options)


def remove_stale_workers() -> None:
    """Remove the worktrees that an earlier run left when it was killed (SIGKILL leaves it no
    time to clean up): those in a workers' folder whose owner is gone. Its workers, which
    run on in sessions of their own, are killed first."""
    listing = run("git", "worktree", "list", "--porcelain", capture=True)
    trees = [Path(line.removeprefix("worktree ")) for line in listing.splitlines() if line.startswith("worktree ")]
    for root in {tree.parent for tree in trees if tree.parent.name.startswith(WORKERS_PREFIX)}:
        owner = json.loads((root / OWNER).read_text()) if (root / OWNER).is_file() else {}
        if owner.get("pid") and _alive(owner["pid"]):
            continue
        for group in owner.get("groups", []):
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)
        for tree in (tree for tree in trees if tree.parent == root):
            run("git", "worktree", "remove", "--force", str(tree), check=False, capture=True)
        shutil.rmtree(root, ignore_errors=True)
        print(f"removed the worktrees that an earlier run, killed, left in {root}", file=sys.stderr)
    run("git", "worktree", "prune", check=False)


def _alive(pid: int) -> bool:
    """Whether process `pid` runs: a killed one whose parent has not reaped it yet (a zombie,
    as a killed `make study` is until init gets to it) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # Linux: the state follows the command name, which is in parentheses
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def train_in_workers(stages: list[str], workers: int, progress: Progress) -> None:
    """Reproduce `stages` in `workers` worktrees at once, sharing this checkout's DVC cache;
    copy their logs into logs/. Interrupted, stop the workers, then remove the worktrees."""
    cache = str(cache_dir())
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    remove_stale_workers()
    root = Path(tempfile.mkdtemp(prefix=WORKERS_PREFIX))
    trees = [root / f"worker-{i}" for i in range(1, workers + 1)]
    children: list[Child] = []
    try:
        write_json(root / OWNER, {"pid": os.getpid(), "groups": []})
        for tree in trees:
            make_worktree(tree, cache)
        for i, tree in enumerate(trees, 1):
            mine = share(stages, i, workers)
            print(f"worker {i}/{workers}: {len(mine)} stage(s), {threads} thread(s)", flush=True)
            env = dict(os.environ, INITSTUDY_THREADS=str(threads), PYTHONPATH=os.pathsep.join(
                filter(None, [str(tree / "src"), os.environ.get("PYTHONPATH")])))
            children.append(Child([sys.executable, "-m", "dvc", "repro", *mine], cwd=tree, env=env,
                                  prefix=f"[{i}/{workers}] ", progress=progress))
        write_json(root / OWNER, {"pid": os.getpid(), "groups": [child.process.pid for child in children]})
        failed = [i for i, child in enumerate(children, 1) if child.wait() != 0]
        for tree in trees:
            for log in (tree / "logs").glob("*.json"):
                Path("logs").mkdir(exist_ok=True)
                shutil.copy2(log, Path("logs") / log.name)
        if failed:
            raise StudyError(f"worker(s) {', '.join(map(str, failed))} of {workers} failed (their output is above); "
                             "what the others trained is in the DVC cache, so running this again resumes")
        gather(stages, trees)
    finally:
        for child in children:
            child.stop()
        for tree in trees:
            run("git", "worktree", "remove", "--force", str(tree), check=False, capture=True)
        run("git", "worktree", "prune", check=False)
        shutil.rmtree(root, ignore_errors=True)


def gather(stages: list[str], trees: list[Path]) -> None:
    """Enter `stages`, trained by the workers in `trees` (stage i in tree i mod N), in this
    checkout's dvc.lock as `dvc repro` enters a stage it ran (replaced where it was, else
    appended, in `stages`' order), with DVC's own YAML writer; then check their outputs out."""
    entries = {}
    for i, tree in enumerate(trees, 1):
        lock = load_yaml(str(tree / "dvc.lock"))["stages"]
        entries.update({name: lock[name] for name in share(stages, i, len(trees))})
    with shielded(), modify_yaml("dvc.lock") as lock:
        lock["stages"].update((name, entries[name]) for name in stages)
    checkout(Path.cwd(), GROUP, force=True)  # one target: DVC parses dvc.lock again for each


def has_commit() -> bool:
    """Whether this checkout has a commit (HEAD), which a worker's worktree starts from."""
    return run("git", "rev-parse", "--verify", "--quiet", "HEAD", capture=True, check=False) != ""


def reproduce(workers: int, command: str) -> None:
    """Check the params and what dvc.lock keeps in the cache (verify.py, repairing any damage),
    then `dvc repro` with the training stages spread over `workers`, a line for each run that
    finishes. Interrupted, say what finished and stop."""
    progress = None
    try:
        check_params()
        verify(fix=True, quiet=True)  # DVC trusts its cache by name: nothing is trained from, or kept, damaged
        if workers > 1 and not has_commit():
            print("no git commit yet, and a worker is a worktree of HEAD: training with one worker "
                  "(commit, then `make study` spreads the training over the CPUs)", file=sys.stderr)
            workers = 1
        dvc("repro", PREPARE)
        stages = training_stages(stale=True)
        progress = Progress(stages)
        if workers > 1 and len(stages) > 1:
            train_in_workers(stages, min(workers, len(stages)), progress)
        dvc("repro", progress=progress)
    except Interrupted as exc:
        print(interrupted(progress, command), file=sys.stderr)
        sys.exit(exit_status(exc.signum))


@stage_main
def main() -> None:
    catch_signals()  # in place of stage_main's: the workers are stopped, their worktrees removed
    parser = argparse.ArgumentParser(prog="python -m initstudy.parallel", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="training processes at once (default: one per CPU)")
    parser.add_argument("--command", default="python -m initstudy.parallel",
                        help="the command that runs this, as said after Ctrl-C (e.g. `make study`)")
    args = parser.parse_args()
    if args.workers < 1:
        raise StudyError(f"--workers {args.workers}: expected at least 1")
    reproduce(args.workers, args.command)


if __name__ == "__main__":
    main()
