"""Train one shard of the study: worker i of N trains every N-th training stage.

The stages are those of `dvc stage list` in the `train` group, in the order dvc.yaml
lists them, so every worker of the same commit and params draws the same split. Each
stage of the shard is reproduced with `dvc repro`, all in one call; when the project has
a default DVC remote, one at a time, and each trained run is pushed at once, its files first and then the run-cache
entries, so that the remote never holds a training entry without its files and a killed
worker loses at most the run in progress. Stages whose run another worker or an earlier
attempt already pushed are restored from the remote (`dvc repro --pull`), not trained.
If the remote fails, the shard stops with a message naming it and DVC's reason; what it
trained stays in the local cache, and a rerun pushes it without training it again. With
an SSH remote, the server's host key is checked first (hostkeys.py). A line is printed
for each run that finishes; Ctrl-C stops the stage in progress and says what finished.

    python -m initstudy.shards 2/4          # or: make train SHARD=2/4
"""

from __future__ import annotations

import argparse
import re
import sys

from dvc.config import Config
from dvc.repo import Repo

from initstudy.errors import StudyError, stage_main
from initstudy.hostkeys import check_host_key
from initstudy.supervise import Child, Interrupted, Progress, catch_signals, dvc, exit_status, interrupted, shielded
from initstudy.verify import verify

GROUP = "train"
PREPARE = "prepare"  # the stage whose output every training stage reads


def parse_shard(text: str) -> tuple[int, int]:
    """`i/N` (1 ≤ i ≤ N) as (i, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise StudyError(f"shard {text!r}: expected i/N with 1 <= i <= N, e.g. 1/4")
    return int(match[1]), int(match[2])


def training_stages(stale: bool = False) -> list[str]:
    """The project's training stages, in dvc.yaml's order (`dvc stage list`); with `stale`, those
    `dvc status` names, which `dvc repro` would run or restore. DVC reads the project in this
    process (once, where its CLI would start twice); a signal waits until it is done."""
    with shielded(), Repo() as repo:
        names = [stage.addressing for stage in repo.index.stages if stage.addressing.startswith(f"{GROUP}@")]
        if stale:
            status = repo.status()
            names = [name for name in names if name in status]
        return names


def share(stages: list[str], index: int, count: int) -> list[str]:
    """Worker `index` of `count` takes every `count`-th stage, starting at its own index."""
    return stages[index - 1 :: count]


def default_remote() -> str | None:
    """The project's default DVC remote, if it has one."""
    return Config(dvc_dir=".dvc")["core"].get("remote") or None


def remote_setting(remote: str, key: str) -> str:
    """A setting of a DVC remote as `dvc config remote.<remote>.<key>` prints it; "" if unset."""
    return str(Config(dvc_dir=".dvc")["remote"].get(remote, {}).get(key, ""))


def check_params() -> None:
    """Run the project's params check before any DVC command parses params.yaml (DVC would
    expand a YAML alias bomb for minutes, and its messages name no key)."""
    if Child([sys.executable, "src/stages/check_params.py"]).wait() != 0:
        raise StudyError("params.yaml: fix the problems above, then run this again")


def train_shard(index: int, count: int, command: str) -> None:
    """Check the params and what dvc.lock keeps in the cache (verify.py, repairing any damage),
    then reproduce (and, with a default remote, publish) shard `index` of `count`, a line for
    each run that finishes. Interrupted, say what finished and stop."""
    progress = None
    try:
        check_params()
        verify(fix=True, quiet=True)  # DVC trusts its cache by name: nothing is trained from, or pushed, damaged
        stages = share(training_stages(), index, count)
        remote = default_remote()
        if remote:  # DVC's SSH remote checks no host key: OpenSSH's client checks it first
            check_host_key(*(remote_setting(remote, key) for key in ("url", "port", "user")))
        print(f"shard {index}/{count}: {len(stages)} stage(s)" + (f", pushed to remote '{remote}'" if remote else ""),
              flush=True)
        progress = Progress(stages)
        if not stages:
            return
        if not remote:  # one `dvc repro` for all: DVC's bookkeeping costs about 1.5 s a call
            dvc("repro", *stages, progress=progress)
            return
        for number, stage in enumerate(stages):  # one at a time, each published before the next starts
            with_remote(remote, "repro", "--pull", stage)
            with_remote(remote, "push", stage)
            if number == 0:  # the prepared data too: the run-cache holds an entry of the stage that made it
                with_remote(remote, "push", PREPARE)
            with_remote(remote, "push", "--run-cache", stage)
            progress.done(stage)
    except Interrupted as exc:
        print(interrupted(progress, command), file=sys.stderr)
        sys.exit(exit_status(exc.signum))


def with_remote(remote: str, *args: str) -> None:
    """Run a dvc command that uses the remote, its messages shown as they come; if it fails,
    stop with a message naming the remote (name and URL) and DVC's last words on the problem."""
    child = Child([sys.executable, "-m", "dvc", *args])
    if child.wait() != 0:
        url = remote_setting(remote, "url")
        said = [line.strip() for line in child.said if line.strip() and not line.startswith("Having any troubles?")]
        problem = [line for line in said if line.startswith("ERROR")] or said
        # dvc-ssh 4.3's words for a remote folder it cannot write to
        if url.startswith("ssh://") and problem and "No such file" in problem[-1]:
            problem.append("(over SSH, DVC says this when the login user may not write to the remote's folder)")
        raise StudyError(f"`dvc {' '.join(args)}` failed, with the remote '{remote}' ({url}):\n  "
                         + "\n  ".join(problem[-3:]) + "\nWhat was trained is kept in this workspace's DVC cache: "
                         "fix the problem (the remote's settings: `dvc remote list`, `dvc remote modify --local`), "
                         "then run this shard again; it pushes those runs without training them again.")


@stage_main
def main() -> None:
    catch_signals()  # in place of stage_main's: the running stage is stopped and DVC left consistent
    parser = argparse.ArgumentParser(prog="python -m initstudy.shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shard", type=parse_shard, help="i/N: this worker's number and the number of workers")
    parser.add_argument("--list", action="store_true", help="only print the shard's stages")
    parser.add_argument("--command", help="the command that runs this, as said after Ctrl-C (e.g. `make train`)")
    args = parser.parse_args()
    index, count = args.shard
    if args.list:
        print("\n".join(share(training_stages(), index, count)))
    else:
        train_shard(index, count, args.command or f"python -m initstudy.shards {index}/{count}")


if __name__ == "__main__":
    main()
