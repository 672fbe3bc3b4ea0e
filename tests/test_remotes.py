"""SSH and S3 DVC remotes for real, on 127.0.0.1: OpenSSH's sshd and moto's S3 server.

Shard workers push their runs with run-cache entries and a collaborator's `dvc repro
--pull` trains nothing; a worker killed in the middle of a push leaves the remote
consistent; a remote that fails stops a shard with a message naming it, and the trained
runs stay in the local cache. Without sshd (Debian's openssh-server) or the plugins
(`make setup-remotes`) the tests are skipped; with INITSTUDY_REMOTES=1, as CI sets, they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from conftest import start
from initstudy.hostkeys import KNOWN_HOSTS_ENV
from initstudy.shards import share
from test_scale import TRAIN, assert_consistent, finish, restored, results, trained
from workspace import Workspace

pytestmark = [pytest.mark.servers, pytest.mark.training]

SSHD = "/usr/sbin/sshd"
REQUIRED = os.environ.get("INITSTUDY_REMOTES") == "1"
NAME = "team"  # the remote's name in every workspace
BUCKET = "initstudy"
REGION = "us-east-1"


def need(present: object, what: str, install: str = "make setup-remotes") -> None:
    """Skip the test when `what` is missing, or fail it under INITSTUDY_REMOTES=1."""
    if not present:
        message = f"{what} is missing: `{install}` (with INITSTUDY_REMOTES=1, as CI sets, this test fails)"
        (pytest.fail if REQUIRED else pytest.skip)(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(command: list[str], log: Path, **popen: Any) -> subprocess.Popen:
    """Start a server in its own process group, its output to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen)


def wait_for_port(port: int, server: subprocess.Popen, log: Path) -> None:
    """Until something listens on 127.0.0.1:`port`; fail with `log` if `server` ends first."""
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert server.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def stop(server: subprocess.Popen) -> None:
    """End a server started by start_server, and what it forked."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended on its own (its log says why)
        pass
    server.wait()


class Remote(Protocol):
    """A DVC remote on 127.0.0.1: `place` names a remote of its own on the server."""

    def url(self, place: str) -> str: ...

    def add(self, workspace: Workspace, place: str) -> None:
        """Make the remote at `place` the workspace's default, in .dvc/config (committed)."""

    def log_in(self, workspace: Workspace) -> Workspace:
        """Give the workspace the credentials, in its git-ignored .dvc/config.local."""

    def files(self, place: str, into: Path) -> Path:
        """The remote's files as a local folder (a copy under `into`), for assert_consistent."""


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


@dataclass
class SSHServer:
    """sshd on 127.0.0.1:`port`, letting in `user` with the private key `key` only, over SFTP."""

    user: str
    port: int
    root: Path  # the server's folder: its config, its keys, the remotes
    key: Path
    refused: Path  # a key the server does not know
    known_hosts: Path  # the server's host key, as a client that trusts it holds it

    def url(self, place: str, port: int | None = None) -> str:
        return f"ssh://{self.user}@127.0.0.1:{port or self.port}{self.root / place}"

    def add(self, workspace: Workspace, place: str) -> None:
        workspace.run("dvc", "remote", "add", "-d", "-f", NAME, self.url(place))

    def log_in(self, workspace: Workspace, key: Path | None = None) -> Workspace:
        """Log in with `key`, the server's host key known (the project checks it before a push or pull)."""
        workspace.run("dvc", "remote", "modify", "--local", NAME, "keyfile", str(key or self.key))
        workspace.env[KNOWN_HOSTS_ENV] = str(self.known_hosts)
        return workspace

    def files(self, place: str, into: Path) -> Path:
        return self.root / place  # on this machine: the folder itself


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """OpenSSH's sshd with a host key and a client key made for it, run as the one user it
    lets in: the tests' user, or `nobody` when they run as root. So the login is never root's
    (PermitRootLogin no), sshd holds no privileges, and nothing system-wide is made or changed."""
    need(Path(SSHD).is_file(), SSHD, "apt-get install openssh-server")
    need(importlib.util.find_spec("dvc_ssh"), "dvc-ssh")
    as_root = os.getuid() == 0
    if as_root:
        need("nobody" in {user.pw_name for user in pwd.getpwall()}, "the user nobody", "adduser --system nobody")
    login = pwd.getpwnam("nobody") if as_root else pwd.getpwuid(os.getuid())
    client = tmp_path_factory.mktemp("ssh-client")
    key, refused = keygen(client / "key"), keygen(client / "refused")
    root = Path(tempfile.mkdtemp(prefix="initstudy-sshd-"))  # not in pytest's folder, which `nobody` cannot enter
    host_key = keygen(root / "host_key")
    shutil.copy(key.with_suffix(".pub"), root / "authorized_keys")
    port = free_port()
    (root / "sshd_config").write_text(f"""\
# sshd runs as the login user, {login.pw_name}: it can let in no one else, and never root.
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile none
AllowUsers {login.pw_name}
PermitRootLogin no
AuthorizedKeysFile {root / "authorized_keys"}
# These files are not laid out as in a home's ~/.ssh.
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM's account check lets a key log in to an account that has no password, as `nobody`;
# sshd's own (UsePAM no) takes such an account for a locked one.
UsePAM yes
# SFTP only: all that DVC needs, and no shell (`nobody` has none).
Subsystem sftp internal-sftp
ForceCommand internal-sftp
LogLevel VERBOSE
""")
    for path in (root, *root.iterdir()):
        os.chown(path, login.pw_uid, login.pw_gid)
    log = client / "sshd.log"
    as_login = dict(user=login.pw_uid, group=login.pw_gid, extra_groups=[]) if as_root else {}
    server = start_server([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], log, **as_login)
    try:
        wait_for_port(port, server, log)
        # The server as OpenSSH's own client sees it, its host key checked against the one made here.
        known_hosts = client / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.with_suffix('.pub').read_text()}")
        check = subprocess.run(
            ["sftp", "-F", "/dev/null", "-b", "-", "-i", str(key), "-P", str(port), "-o", "BatchMode=yes",
             "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
             f"{login.pw_name}@127.0.0.1"], input=f"ls {root}\n", capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr + log.read_text()
        yield SSHServer(login.pw_name, port, root, key, refused, known_hosts)
    finally:
        stop(server)
        shutil.rmtree(root)


@dataclass
class S3Server:
    """moto's S3 server on `endpoint`, with the bucket BUCKET and a user allowed to use it."""

    endpoint: str
    key_id: str
    secret: str
    reader: tuple[str, str]  # the key id and secret of a user who may only read the bucket

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=self.key_id,
                            aws_secret_access_key=self.secret)

    def url(self, place: str) -> str:
        return f"s3://{BUCKET}/{place}"

    def add(self, workspace: Workspace, place: str) -> None:
        workspace.run("dvc", "remote", "add", "-d", "-f", NAME, self.url(place))
        workspace.run("dvc", "remote", "modify", NAME, "endpointurl", self.endpoint)
        workspace.run("dvc", "remote", "modify", NAME, "region", REGION)

    def log_in(self, workspace: Workspace, key_id: str | None = None, secret: str | None = None) -> Workspace:
        workspace.run("dvc", "remote", "modify", "--local", NAME, "access_key_id", key_id or self.key_id)
        workspace.run("dvc", "remote", "modify", "--local", NAME, "secret_access_key", secret or self.secret)
        return workspace

    def objects(self, place: str) -> dict[str, tuple[str, str]]:
        """Every object under `place`: its ETag and time of writing."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{place}/")
        return {obj["Key"].removeprefix(f"{place}/"): (obj["ETag"], obj["LastModified"].isoformat())
                for page in pages for obj in page.get("Contents", [])}

    def files(self, place: str, into: Path) -> Path:
        client = self.client()
        shutil.rmtree(into, ignore_errors=True)
        for name in self.objects(place):
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            client.download_file(BUCKET, f"{place}/{name}", str(into / name))
        return into


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`python -m moto.server` on 127.0.0.1, with a bucket and a user allowed S3 on it, and
    checking every request's credentials from then on (by default moto takes any)."""
    for module, package in (("dvc_s3", "dvc-s3"), ("moto", "moto"), ("flask_cors", "moto[server]"),
                            ("boto3", "boto3")):
        need(importlib.util.find_spec(module), package)
    import boto3

    log, port = tmp_path_factory.mktemp("moto") / "moto.log", free_port()
    server = start_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, server, log)
        # Until reset-auth below, moto takes any credentials: dummy ones, to make the bucket and its user.
        anyone = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="-")
        iam, keys = boto3.client("iam", **anyone), {}
        for user, actions in (("team", ["s3:*"]), ("reader", ["s3:Get*", "s3:List*"])):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = key["AccessKeyId"], key["SecretAccessKey"]
        boto3.client("s3", **anyone).create_bucket(Bucket=BUCKET)
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0",
                                                      headers={"Content-Type": "text/plain"}), timeout=30)
        yield S3Server(endpoint, *keys["team"], reader=keys["reader"])
    finally:
        stop(server)


@pytest.fixture(params=["ssh", "s3"])
def remote(request: pytest.FixtureRequest) -> Remote:
    return request.getfixturevalue(f"{request.param}_server")


def shard(workspace: Workspace, spec: str, log: Path) -> subprocess.Popen:
    """Start `python -m initstudy.shards spec` in `workspace`, as a worker of one CPU runs it."""
    env = dict(workspace.env, INITSTUDY_THREADS="1")  # as deploy/ sets it: the workers share the CPUs
    return start(["python", "-m", "initstudy.shards", spec], workspace.path, env, log)


@pytest.fixture(scope="module")
def prepared(origin, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A clone of the committed small study whose download and prepare stages ran, nothing
    trained, no remote. Read only: a test that trains starts from a copy (`Workspace.copy`),
    with the data in its cache."""
    workspace = origin.clone(tmp_path_factory.mktemp("remotes") / "prepared")
    assert {"download", "prepare"} <= workspace.repro("prepare")
    return workspace


def test_two_shards_fill_the_remote_and_a_collaborator_trains_nothing(remote: Remote, origin, one_machine,
                                                                      tmp_path: Path) -> None:
    """Two workers at once push their runs with run-cache entries through the server; a fresh
    clone's `dvc repro --pull` restores every run and gets the one-machine metrics, byte for byte."""
    team = origin.clone(tmp_path / "team")
    remote.add(team, tmp_path.name)
    team.commit("team remote")
    workers = [remote.log_in(team.clone(tmp_path / f"worker{i}")) for i in (1, 2)]
    for worker in workers:  # the credentials are in the git-ignored .dvc/config.local only
        assert worker.run("git", "status", "--porcelain").stdout == ""
        assert re.search("keyfile|secret_access_key", (worker.path / ".dvc" / "config.local").read_text())
    logs = [tmp_path / f"worker{i}.log" for i in (1, 2)]
    running = [shard(worker, f"{i}/2", log) for i, (worker, log) in enumerate(zip(workers, logs), 1)]
    shards = [trained(finish(process, log)) for process, log in zip(running, logs)]
    assert shards[0] | shards[1] == set(TRAIN) and not shards[0] & shards[1]
    assert assert_consistent(remote.files(tmp_path.name, tmp_path / "view")) >= len(TRAIN)

    collaborator = remote.log_in(team.clone(tmp_path / "collaborator"))
    output = collaborator.run("dvc", "repro", "--pull").stdout
    assert not trained(output), output
    assert restored(output) == set(TRAIN)
    assert results(collaborator) == results(one_machine)


def test_a_worker_killed_mid_push_leaves_the_s3_remote_consistent(s3_server: S3Server, prepared,
                                                                   tmp_path: Path) -> None:
    """SIGKILL as soon as the push of the worker's second run has put a file in the bucket:
    every run-cache entry there still has its files, and a rerun restores the first run,
    trains the second and rewrites no object that was there. (Both workers start with the
    data prepared, nothing trained: a copy of the team's repository and its cache.)"""
    place, (first, second) = tmp_path.name, share(TRAIN, 1, 2)
    team = prepared.copy(tmp_path / "team")
    s3_server.add(team, place)
    team.commit("team remote")
    log = tmp_path / "killed.log"
    worker = shard(s3_server.log_in(team.copy(tmp_path / "killed")), "1/2", log)
    deadline = time.monotonic() + 600
    while f"Running stage '{second}'" not in log.read_text():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    files = {name for name in s3_server.objects(place) if name.startswith("files/")}
    while not {name for name in s3_server.objects(place) if name.startswith("files/")} - files:
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    os.killpg(worker.pid, signal.SIGKILL)  # the machine is gone, mid-push
    worker.wait()
    entries = assert_consistent(s3_server.files(place, tmp_path / "killed-view"))
    assert entries >= 1
    before = {name: obj for name, obj in s3_server.objects(place).items() if name.startswith("files/")}

    log = tmp_path / "rerun.log"
    output = finish(shard(s3_server.log_in(team.copy(tmp_path / "rerun")), "1/2", log), log)
    assert restored(output) == {first} and trained(output) == {second}, output
    after = s3_server.objects(place)
    assert {name: after[name] for name in before} == before  # nothing already there was written again
    assert assert_consistent(s3_server.files(place, tmp_path / "rerun-view")) > entries


def set_url(workspace: Workspace, url: str) -> None:
    workspace.run("dvc", "remote", "modify", NAME, "url", url)


def read_only(server: SSHServer, place: str) -> str:
    """A folder beside `place` on the server that its login user may read but not write."""
    folder = server.root / f"{place}-read-only"
    folder.mkdir()
    folder.chmod(0o555)  # and owned by the tests' user: for `nobody`, root's
    return folder.name


# How each remote goes wrong, and what DVC says of it. (moto checks the credentials only
# because the s3_server fixture told it to; by default it takes any.)
BAD_REMOTES = {
    "unreachable-host": ("ssh", lambda server, workspace, place: set_url(workspace, server.url(place, free_port())),
                         r"Connect call failed \('127\.0\.0\.1', \d+\)"),
    "refused-key": ("ssh", lambda server, workspace, place: server.log_in(workspace, server.refused),
                    r"Permission denied for user \w+ on host 127\.0\.0\.1"),
    "read-only-folder": ("ssh",
                         lambda server, workspace, place: set_url(workspace, server.url(read_only(server, place))),
                         r"No such file\n  \(over SSH, DVC says this when the login user may not write"),
    "missing-bucket": ("s3", lambda server, workspace, place: set_url(workspace, f"s3://no-such-bucket/{place}"),
                       r"NoSuchBucket"),
    "wrong-credentials": ("s3", lambda server, workspace, place: server.log_in(workspace, secret="wrong"),
                          r"\(403\) when calling the \w+ operation: Forbidden"),
    "read-only-credentials": ("s3", lambda server, workspace, place: server.log_in(workspace, *server.reader),
                              r"\(AccessDenied\) when calling the \w+ operation"),
}


def failed_shard(process: subprocess.Popen, log: Path) -> str:
    """What the shard printed; it must have failed on its remote, as a StudyError."""
    assert process.wait(timeout=900) == 2, log.read_text()
    return log.read_text()


@pytest.mark.parametrize("case", BAD_REMOTES)
def test_a_bad_remote_stops_the_shard_with_a_clear_message_and_loses_nothing(case: str, prepared, tmp_path: Path,
                                                                            request: pytest.FixtureRequest) -> None:
    """The remote goes bad while the shard trains: its push fails with exit status 2 and a
    message naming the remote and DVC's reason. Run again with the remote still bad, it fails
    the same way and trains nothing; once the remote is fixed, it pushes without training.
    (The worker starts with the data prepared: only the training and the pushes are its own.)"""
    kind, spoil, problem = BAD_REMOTES[case]
    server, place = request.getfixturevalue(f"{kind}_server"), tmp_path.name
    worker = prepared.copy(tmp_path / "worker")
    server.add(worker, place)
    server.log_in(worker)
    log = tmp_path / "failed.log"
    process = shard(worker, "1/4", log)
    deadline = time.monotonic() + 600
    while f"Running stage '{TRAIN[0]}'" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGSTOP)  # spoil the remote while the run trains, before its push
    try:
        assert "Updating lock file" not in log.read_text().split(f"Running stage '{TRAIN[0]}'")[1]
        spoil(server, worker, place)
    finally:
        os.killpg(process.pid, signal.SIGCONT)
    url = worker.run("dvc", "config", f"remote.{NAME}.url").stdout.strip()
    first = failed_shard(process, log)
    again = failed_shard(shard(worker, "1/4", tmp_path / "again.log"), tmp_path / "again.log")
    for output, runs in ((first, {TRAIN[0]}), (again, set())):
        error = output[output.index("error: "):]
        assert f"with the remote '{NAME}' ({url})" in error and re.search(problem, error), error
        assert trained(output) == runs, output
    assert "up to date" in worker.run("dvc", "status", TRAIN[0]).stdout  # the run's outputs are all in the cache

    server.add(worker, place)
    server.log_in(worker)
    output = worker.run("python", "-m", "initstudy.shards", "1/4")
    assert "Running stage 'train@" not in output.stdout + output.stderr
    assert assert_consistent(server.files(place, tmp_path / "view")) >= 1
