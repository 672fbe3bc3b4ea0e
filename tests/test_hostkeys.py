"""An SSH remote's host key is checked by OpenSSH's client before `make train` pushes or
pulls: an unknown or changed key stops it with OpenSSH's words, and trust is stated on purpose."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from initstudy.hostkeys import KNOWN_HOSTS_ENV, TRUST_ENV
from test_interrupt import TINY, make
from test_remotes import SSHD, free_port, keygen, start_server, stop, wait_for_port
from workspace import Workspace

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """OpenSSH's sshd on 127.0.0.1 with a host key of its own, letting no one in (the check
    needs none): its port and its public host key. Run as `nobody` when the tests run as root."""
    if not Path(SSHD).is_file():
        pytest.skip(f"{SSHD} is missing: apt-get install openssh-server")
    root = Path(tempfile.mkdtemp(prefix="initstudy-sshd-"))
    host_key = keygen(root / "host_key")
    port = free_port()
    (root / "sshd_config").write_text(f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nPidFile none\n"
                                      "UsePAM no\nStrictModes no\nPasswordAuthentication no\nAllowUsers nobody\n")
    as_root = os.getuid() == 0
    login = pwd.getpwnam("nobody") if as_root else pwd.getpwuid(os.getuid())
    for path in (root, *root.iterdir()):
        os.chown(path, login.pw_uid, login.pw_gid)
    log = tmp_path_factory.mktemp("sshd") / "sshd.log"
    server = start_server([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], log,
                          **(dict(user=login.pw_uid, group=login.pw_gid, extra_groups=[]) if as_root else {}))
    try:
        wait_for_port(port, server, log)
        yield port, host_key.with_suffix(".pub")
    finally:
        stop(server)
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory, sshd: tuple[int, Path]) -> Workspace:
    """A committed study whose default remote is the SSH server."""
    workspace = Workspace.create(tmp_path_factory.mktemp("hostkeys") / "repo", **TINY)
    workspace.run("dvc", "remote", "add", "-d", "team", f"ssh://nobody@127.0.0.1:{sshd[0]}/srv/initstudy")
    workspace.commit("a study with an SSH remote")
    return workspace


def train(workspace: Workspace, known_hosts: Path, **env: str):
    """`make train` as the last of more shards than runs: it trains nothing, but would push."""
    workspace.env.update({KNOWN_HOSTS_ENV: str(known_hosts), **env})
    try:
        return workspace.run(*make("train", "SHARD=9/9"), check=False)
    finally:
        for name in (KNOWN_HOSTS_ENV, *env):
            workspace.env.pop(name)


def test_an_unknown_host_key_is_refused_with_openssh_words(shard: Workspace, sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()
    result = train(shard, known_hosts)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"No ED25519 host key is known for [127.0.0.1]:{sshd[0]} and you have requested strict checking." \
        in result.stderr
    assert "Host key verification failed." in result.stderr and f"{TRUST_ENV}=1 adds it" in result.stderr
    assert "shard 9/9" not in result.stdout and known_hosts.read_text() == ""


def test_a_changed_host_key_is_refused_even_when_trusting_new_ones(shard: Workspace, sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = keygen(tmp_path / "impostor").with_suffix(".pub").read_text()
    known_hosts.write_text(f"[127.0.0.1]:{sshd[0]} {other}")
    result = train(shard, known_hosts, **{TRUST_ENV: "1"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!" in result.stderr
    assert "Host key verification failed." in result.stderr and "shard 9/9" not in result.stdout


def test_a_key_trusted_on_purpose_is_added_then_known(shard: Workspace, sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()
    result = train(shard, known_hosts, **{TRUST_ENV: "1"})
    assert result.returncode == 0 and "shard 9/9: 0 stage(s), pushed to remote 'team'" in result.stdout, result.stderr
    key = sshd[1].read_text().split()[:2]
    assert known_hosts.read_text().split()[1:3] == key
    result = train(shard, known_hosts)  # known now: no trust needed
    assert result.returncode == 0 and "shard 9/9" in result.stdout, result.stderr
