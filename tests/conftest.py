"""Shared fixtures: the real MNIST mirror, a loopback HTTP server, a DVC project in a temp repo."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("KERAS_BACKEND", "jax")

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["dvc.yaml", "params.yaml", "src", "plots/templates"]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the four official MNIST files (INITSTUDY_DATA_MIRROR or ../shared)."""
    path = Path(os.environ.get("INITSTUDY_DATA_MIRROR", ROOT.parent / "shared/data/mnist-idx"))
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST mirror at {path}; set INITSTUDY_DATA_MIRROR")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve():
    """Serve a folder over HTTP on 127.0.0.1; returns its base URL."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def command_env(tmp: Path) -> dict[str, str]:
    """Environment for the dvc and git CLIs: this interpreter first, no analytics, private dirs."""
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site"),
        DVC_GLOBAL_CONFIG_DIR=str(tmp / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(tmp / "dvc-system"),
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    env.pop("KERAS_BACKEND", None)
    return env


class Project:
    """A copy of this project in its own git + DVC repo, driven through the real CLIs."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=900
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def repro(self, *args: str) -> set[str]:
        """Run `dvc repro`; return the names of the stages that actually ran."""
        out = self.run("dvc", "repro", *args).stdout
        return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_params(self, **sections: dict) -> None:
        """Update keys of params.yaml, e.g. set_params(train={"epochs": 2})."""
        params = self.params()
        for section, values in sections.items():
            params[section].update(values)
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message)


SMALL_STUDY = dict(
    data={"train_samples": 1000, "val_samples": 500},
    study={"initializers": ["zeros", "he_normal"], "seeds": [0, 1]},
    train={"epochs": 1},
)


def make_project(tmp: Path, mirror: str) -> Project:
    """Copy the project into `tmp/repo`, `git init` + `dvc init`, and set the small study."""
    repo = tmp / "repo"
    for name in PROJECT_FILES:
        src, dst = ROOT / name, repo / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    env = command_env(tmp) | {"INITSTUDY_DATA_MIRROR": mirror}
    project = Project(repo, env)
    project.run("git", "init", "-q")
    project.run("dvc", "init", "-q")
    project.set_params(**SMALL_STUDY)
    return project


@pytest.fixture
def project(tmp_path: Path, mnist_dir: Path) -> Iterator[Project]:
    """A fresh small-study project whose download reads the local MNIST mirror."""
    yield make_project(tmp_path, str(mnist_dir))
