"""Run one of the committed studies and keep its results on main, in studies/<name>/.

A study is the default params.yaml with the overrides of studies/<name>.yaml. This runs
the pipeline on them as `make study` does (python -m initstudy.parallel) in a git worktree
of HEAD beside the repository (sharing its DVC cache, so runs it already trained are not
trained again), then copies into
studies/<name>/ the params it ran with, its dvc.lock, metrics and plots (those the plots stage
drew, and init_layers.png). Same params and seeds give the same files, bit for bit. The
study's params are checked first, named after studies/<name>.yaml; the data comes from the
cache where it is there; Ctrl-C stops the pipeline, removes the worktree and says what finished.

    python studies/run.py depth        # INITSTUDY_DATA_MIRROR works as for `dvc repro`
    python studies/run.py depth --redraw   # only its PNGs again, from its committed files
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from initstudy.errors import StudyError
from initstudy.parallel import share_cache
from initstudy.shards import PREPARE
from initstudy.params import parse_params
from initstudy.supervise import Interrupted, catch_signals, dvc, exit_status, interrupted, run, stop_group

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ["dvc.lock", "metrics/results.md", "metrics/summary.json", "metrics/networks.csv", "metrics/runs.csv",
           "metrics/epochs.csv", "metrics/init_layers.csv", "metrics/probes.csv",
           "metrics/headline"]
# Drawn for every study, old or new (seeds.png too since plots/comparison/); the others (depth, probes, phase,
# uniform_vs_normal) only where the study has what they show.
PLOTS = ["val_accuracy.png", "val_loss.png", "final_val_accuracy.png", "convergence.png"]


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied: mappings merge key by key, anything else replaces."""
    result = dict(base)
    for key, value in overrides.items():
        result[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return result


def study_params(name: str) -> dict[str, Any]:
    """The full params of study `name`: params.yaml with studies/<name>.yaml applied."""
    overrides = yaml.safe_load((HERE / f"{name}.yaml").read_text())
    return merged(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides)


def run_study(name: str) -> Path:
    """Reproduce study `name` in a worktree of HEAD; copy its results to studies/<name>/.
    Interrupted, the pipeline says what finished; the worktree is removed."""
    out = HERE / name
    with tempfile.TemporaryDirectory(prefix=f"study-{name}-") as tmp:
        tree = Path(tmp) / "tree"
        try:
            run("git", "worktree", "add", "--quiet", "--detach", str(tree), "HEAD", cwd=ROOT)
            (tree / "params.yaml").write_text(yaml.safe_dump(study_params(name), sort_keys=False))
            share_cache(tree, dvc("cache", "dir", cwd=ROOT, capture=True).strip())
            # the data from the cache, where it is: the worktree does not download it again
            dvc("checkout", "--quiet", "--with-deps", PREPARE, cwd=tree, check=False)
            # the stages import the worktree's own package, not the one installed from the repository
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree / "src"), os.environ.get("PYTHONPATH")])))
            # `make study`'s way: the training stages spread over one worker per CPU (INITSTUDY_WORKERS to choose)
            workers = os.environ.get("INITSTUDY_WORKERS", str(len(os.sched_getaffinity(0))))
            # in a session of its own, as its workers are: on Ctrl-C it stops them and says what finished
            pipeline = subprocess.Popen([sys.executable, "-m", "initstudy.parallel", "--workers", workers,
                                         "--command", f"python studies/run.py {name}"],
                                        cwd=tree, env=env, start_new_session=True)
            try:
                code = pipeline.wait()
            except Interrupted as exc:
                stop_group(pipeline, grace=120, leader=True)
                exc.told = True
                raise
            if code != 0:
                raise SystemExit(code)
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            shutil.copy2(tree / "params.yaml", out / "params.yaml")
            for result in RESULTS:
                source, target = tree / result, out / Path(result).name
                (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
            for png in [*(tree / "plots" / "comparison").glob("*.png"), *(tree / "plots" / "epochs").glob("*.png"),
                        tree / "plots" / "init" / "init_layers.png"]:
                shutil.copy2(png, out / png.name)
        finally:
            run("git", "worktree", "remove", "--force", str(tree), cwd=ROOT, check=False)
            run("git", "worktree", "prune", cwd=ROOT, check=False)
    return out


def redraw(name: str, out: Path | None = None) -> Path:
    """Draw study `name`'s PNGs again from the files in studies/<name>/ (into `out`, by default
    that folder), with the code of the plots stages and the study's params (today's schema:
    those its runs used are the same, as tests/test_committed_studies.py checks); a plot the
    study no longer draws is removed."""
    out = out or HERE / name
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix=f"redraw-{name}-") as tmp:
        drawn = Path(tmp)
        (drawn / "params.yaml").write_text(yaml.safe_dump(study_params(name), sort_keys=False))
        common = ["--metrics", str(HERE / name), "--params", str(drawn / "params.yaml")]
        subprocess.run([sys.executable, "src/stages/plots.py", *common, "--out", str(drawn)], cwd=ROOT, env=env,
                       check=True)
        subprocess.run([sys.executable, "src/stages/plots_init.py", *common, "--out", str(drawn / "comparison"),
                        "--layers-only"], cwd=ROOT, env=env, check=True)
        for png in out.glob("*.png"):
            png.unlink()
        for png in drawn.glob("*/*.png"):
            shutil.copy2(png, out / png.name)
    return out


def main() -> None:
    catch_signals()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(p.stem for p in HERE.glob("*.yaml")))
    parser.add_argument("--redraw", action="store_true", help="only draw the study's PNGs again from its files")
    args = parser.parse_args()
    command = f"python studies/run.py {args.name}{' --redraw' if args.redraw else ''}"
    try:
        parse_params(study_params(args.name), f"params.yaml with the overrides of studies/{args.name}.yaml",
                     sizes=True)
        print(f"results in {(redraw if args.redraw else run_study)(args.name)}")
    except StudyError as exc:
        sys.exit(f"error: {exc}")
    except Interrupted as exc:
        if args.redraw:
            print(f"interrupted: run `{command}` again to draw the study's PNGs", file=sys.stderr)
        elif not exc.told:
            print(interrupted(None, command), file=sys.stderr)
        sys.exit(exit_status(exc.signum))


if __name__ == "__main__":
    main()
