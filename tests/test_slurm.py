"""deploy/slurm.sbatch on a real SLURM: a single-node cluster on 127.0.0.1, started here.

Debian's slurm-wlm and munge, with a munge key, socket and slurm.conf of the test's own
(nothing system-wide is read or changed). The array is submitted as docs/scaling.md says;
one task is cancelled mid-training and resubmitted alone; a collaborator's `dvc repro
--pull` then trains nothing. Without the packages the test is skipped (failed under
INITSTUDY_REMOTES=1, as CI sets); a scheduler that cannot start here skips it with its log.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_remotes import free_port, need, start_server, stop
from test_scale import TRAIN, restored, results, scaling_block, trained, with_environment
from workspace import Workspace

pytestmark = [pytest.mark.servers, pytest.mark.training]

INSTALL = "apt-get install slurm-wlm munge"
CONF = """\
ClusterName=initstudy
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def slurm(conf: Path, *args: str, check: bool = True) -> str:
    """A SLURM client command against the cluster of `conf`; what it printed."""
    result = subprocess.run(args, env=dict(os.environ, SLURM_CONF=str(conf)), capture_output=True, text=True)
    assert result.returncode == 0 or not check, f"{' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """munged, slurmctld and slurmd on 127.0.0.1, one node with this machine's CPUs; yields slurm.conf."""
    daemons = {name: shutil.which(name) or f"/usr/sbin/{name}" for name in ("munged", "slurmctld", "slurmd")}
    for name, path in daemons.items():
        need(Path(path).is_file(), name, INSTALL)
    need(shutil.which("sbatch"), "sbatch", INSTALL)
    if os.getuid() != 0:
        pytest.skip("slurmd runs each job as its submitter, so it must start as root: "
                    "run the tests as root, as CI does")
    root = tmp_path_factory.mktemp("slurm")
    for folder in ("munge", "state", "spool"):
        (root / folder).mkdir(mode=0o700)
    key = root / "munge" / "key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 9 // 10
    conf.write_text(CONF.format(host=socket.gethostname().split(".")[0], root=root, ctld_port=free_port(),
                                d_port=free_port(), cpus=os.cpu_count(), memory=memory))
    started = []
    try:  # from the first daemon on: whatever ends the test (a failure, its time limit), they are stopped
        started.append(start_server([daemons["munged"], "--foreground", "--force", f"--socket={root}/munge/socket",
                                     f"--key-file={key}", f"--pid-file={root}/munge/pid",
                                     f"--seed-file={root}/munge/seed", f"--log-file={root}/munge/log"],
                                    root / "munged.log"))
        env = dict(os.environ, SLURM_CONF=str(conf))
        for name in ("slurmctld", "slurmd"):  # in the foreground (-D), each in a process group of its own
            started.append(start_server([daemons[name], "-D", "-f", str(conf)], root / f"{name}.log", env=env))
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        while slurm(conf, "sinfo", "-h", "-o", "%T", check=False).strip() != "idle":
            if time.monotonic() > deadline or any(daemon.poll() is not None for daemon in started):
                logs = "\n".join(f"--- {log.name}\n{log.read_text()[-1500:]}" for log in sorted(root.glob("*.log")))
                pytest.skip(f"SLURM did not start on this machine:\n{logs}")
            time.sleep(0.3)
        yield conf
    finally:
        if started:
            slurm(conf, "scancel", "--quiet", f"--user={os.getuid()}", check=False)  # nothing of ours runs on
        for daemon in reversed(started):
            stop(daemon)


def submit(workspace: Workspace, command: str) -> str:
    """Run an `sbatch` command line in `workspace` as a user types it; the job's id."""
    output = workspace.run("bash", "-c", command).stdout
    return re.fullmatch(r"Submitted batch job (\d+)\s*", output)[1]


def wait_for(conf: Path, job: str, timeout: float = 900) -> dict[int, str]:
    """Wait until no task of array job `job` is pending or running; each task's final state."""
    deadline = time.monotonic() + timeout
    while slurm(conf, "squeue", "-h", "-j", job, check=False).strip():
        assert time.monotonic() < deadline, slurm(conf, "squeue", "-j", job)
        time.sleep(1)
    records = slurm(conf, "scontrol", "show", "job", job).split("\n\n")
    return {int(re.search(r"ArrayTaskId=(\d+)", record)[1]): re.search(r"JobState=(\w+)", record)[1]
            for record in records if record.strip()}


def test_an_array_job_trains_the_study_and_a_failed_task_resubmitted_alone_completes_it(
        cluster, origin, one_machine, tmp_path):
    remote = tmp_path / "remote"
    team = origin.clone(tmp_path / "team")
    team.run("dvc", "remote", "add", "-d", "team", str(remote))
    team.commit("team remote")
    with_environment(team)  # `make setup` done in the submission checkout, as the recipe asks
    team.env.update(SLURM_CONF=str(cluster), TMPDIR=str(tmp_path))
    documented = scaling_block("Submit it from the project's checkout").strip()
    command = documented.replace("--array=1-8", "--array=1-2").replace("SHARDS=8", "SHARDS=2")
    assert command != documented and command.startswith("sbatch ")

    job = submit(team, command)
    second = team.path / f"slurm-{job}_2.out"  # sbatch's default output file, in the submission folder
    deadline = time.monotonic() + 900
    while not (second.is_file() and "Running stage 'train@" in second.read_text()):
        assert time.monotonic() < deadline and slurm(cluster, "squeue", "-h", "-j", job).strip(), \
            f"task 2 never trained:\n{second.read_text() if second.is_file() else ''}"
        time.sleep(0.5)
    slurm(cluster, "scancel", f"{job}_2")  # the task dies mid-training: a lost node, a wall-time limit
    assert wait_for(cluster, job) == {1: "COMPLETED", 2: "CANCELLED"}
    first = (team.path / f"slurm-{job}_1.out").read_text()
    assert len(trained(first)) == 2, first

    again = submit(team, command.replace("--array=1-2", "--array=2"))  # the same SHARDS and COMMIT
    assert wait_for(cluster, again) == {2: "COMPLETED"}
    rerun = (team.path / f"slurm-{again}_2.out").read_text()
    assert trained(rerun) == set(TRAIN) - trained(first), rerun

    collaborator = team.clone(tmp_path / "collaborator")
    output = collaborator.run("dvc", "repro", "--pull").stdout
    assert not trained(output), output
    assert restored(output) == set(TRAIN)
    assert results(collaborator) == results(one_machine)
