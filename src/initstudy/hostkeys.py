"""The SSH server's host key, checked by OpenSSH's own client before DVC pushes or pulls.

DVC's SSH remote (dvc-ssh 4.3, through sshfs and asyncssh) checks no host key, so an
impostor on the way would get the runs pushed to it, or put its own into a study pulled
from it. Before the project pushes or pulls over SSH, `ssh` itself connects to the server
with StrictHostKeyChecking=yes and no way to log in: it compares the server's key with
known_hosts as it always does (the user's, the system's, ~/.ssh/config's settings) and
then stops. An unknown or changed key stops the command with OpenSSH's own words. To trust
a server on purpose, INITSTUDY_SSH_TRUST_NEW_HOST=1 adds an unknown key to known_hosts
(OpenSSH's accept-new: a changed key is refused even then).
INITSTUDY_SSH_KNOWN_HOSTS names another known_hosts file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse

from initstudy.errors import StudyError

TRUST_ENV = "INITSTUDY_SSH_TRUST_NEW_HOST"
KNOWN_HOSTS_ENV = "INITSTUDY_SSH_KNOWN_HOSTS"
REFUSED = "Host key verification failed."


def check_host_key(url: str, port: str = "", user: str = "") -> None:
    """Stop with a StudyError unless the SSH server of `url` (ssh://[user@]host[:port]/path;
    `port` and `user`: the remote's own settings, which win) shows the host key known_hosts holds."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        return
    if not shutil.which("ssh"):
        raise StudyError(f"the remote {url} is reached over SSH, and its host key is checked with OpenSSH's "
                         "`ssh` before any push or pull; install OpenSSH's client (Debian: openssh-client)")
    trust = os.environ.get(TRUST_ENV, "") not in ("", "0")
    options = {"BatchMode": "yes", "StrictHostKeyChecking": "accept-new" if trust else "yes",
               # no way to log in: the host key is all it checks
               "PreferredAuthentications": "keyboard-interactive", "KbdInteractiveAuthentication": "no",
               "ConnectTimeout": "30"}
    if os.environ.get(KNOWN_HOSTS_ENV):
        options["UserKnownHostsFile"] = os.environ[KNOWN_HOSTS_ENV]
    command = ["ssh", *(f"-o{key}={value}" for key, value in options.items()),
               "-p", str(port or parts.port or 22), "-l", user or parts.username or "initstudy", "--",
               parts.hostname, "true"]
    said = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True).stderr
    if REFUSED in said:
        raise StudyError(f"the SSH server of the remote {url} is not the one known_hosts knows; OpenSSH says:\n"
                         + said.rstrip() + "\nNothing was pushed or pulled. If the server's key is new and you have "
                         f"checked its fingerprint with its administrator, {TRUST_ENV}=1 adds it to known_hosts "
                         "(a changed key is refused even then: remove the old one as OpenSSH says)")
