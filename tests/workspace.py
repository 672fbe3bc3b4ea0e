"""Scratch copies of this project as their own git + DVC repos, for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from initstudy.download import MIRROR_ENV

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = (".gitignore", "Makefile", "pyproject.toml", "requirements.lock", "dvc.yaml", "params.yaml", "src",
                 "deploy", "plots/templates", "plots/vega/report.html",
                 # the committed studies' answers, which the report shows
                 "studies/depth/depth.png", "studies/phase/phase.png", "studies/residual/spread.png")


def command_env(scratch: Path) -> dict[str, str]:
    """Environment for dvc and git: this interpreter's tools first, no analytics, private dirs.

    The data mirror of the calling environment is dropped: a scratch repo uses one only
    when it is given one explicitly.
    """
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(scratch / ".dvc-site"),
        DVC_GLOBAL_CONFIG_DIR=str(scratch / ".dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(scratch / ".dvc-system"),
        GIT_AUTHOR_NAME="initstudy",
        GIT_AUTHOR_EMAIL="initstudy@example.com",
        GIT_COMMITTER_NAME="initstudy",
        GIT_COMMITTER_EMAIL="initstudy@example.com",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    env.pop("KERAS_BACKEND", None)
    env.pop(MIRROR_ENV, None)
    return env


def update_params(path: Path, **sections: dict[str, Any]) -> None:
    """Change some keys of the params.yaml at `path`, e.g. train={"epochs": 2}."""
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


class Workspace:
    """A copy of the project in its own repo, driven through the real git and dvc CLIs."""

    def __init__(self, path: Path, mirror: str | None = None) -> None:
        self.path = path
        self.env = command_env(path.parent)
        if mirror:
            self.env[MIRROR_ENV] = mirror

    @classmethod
    def create(cls, path: Path, mirror: str | None = None, **params: dict[str, Any]) -> Workspace:
        """Copy the project into `path`, `git init` + `dvc init`, and change some params."""
        for name in PROJECT_FILES:
            src, dst = ROOT / name, path / name
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        workspace = cls(path, mirror)
        workspace.run("git", "init", "-q")
        workspace.run("dvc", "init", "-q")
        shutil.copy2(ROOT / ".dvc" / "config", path / ".dvc" / "config")  # the offline report template
        update_params(path / "params.yaml", **params)
        return workspace

    def clone(self, path: Path) -> Workspace:
        """`git clone` this repo into `path`, as a collaborator or a worker would."""
        self.run("git", "clone", "-q", str(self.path), str(path))
        workspace = Workspace(path)
        workspace.env = dict(self.env)
        return workspace

    def copy(self, path: Path, link: bool = True) -> Workspace:
        """A copy of this repo at `path`, its working tree, git history and DVC cache, to change
        freely. The cache's objects and the data (DVC never writes into either in place) are
        hard links to this repo's; everything else is copied. With `link=False` everything is
        copied, for a test that changes the cache's objects or the data in place (as bit rot)."""

        def link_or_copy(src: str, dst: str) -> None:
            shared = link and Path(src).relative_to(self.path).parts[:2] in {(".dvc", "cache"), ("data", "raw"),
                                                                             ("data", "prepared")}
            os.link(src, dst) if shared else shutil.copy2(src, dst)

        shutil.copytree(self.path, path, symlinks=True, copy_function=link_or_copy)
        workspace = Workspace(path)
        if MIRROR_ENV in self.env:
            workspace.env[MIRROR_ENV] = self.env[MIRROR_ENV]
        return workspace

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command in the repo, in a process group of its own: if the test ends while it
        runs (a time limit, Ctrl-C), what it started ends too."""
        with subprocess.Popen(args, cwd=self.path, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True) as process:
            try:
                stdout, stderr = process.communicate()
            except BaseException:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
                raise
        result = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def repro(self, *args: str) -> set[str]:
        """Run `dvc repro`; return the names of the stages that actually ran."""
        out = self.run("dvc", "repro", *args).stdout
        return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}

    def params(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_params(self, **sections: dict[str, Any]) -> None:
        update_params(self.path / "params.yaml", **sections)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message)
