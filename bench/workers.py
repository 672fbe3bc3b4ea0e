"""Workers on one machine: the default study's training by 1 worker using every thread,
then by 2 workers with 1 thread each (INITSTUDY_THREADS=1), side by side.

Each configuration starts cold, as a new machine would: its own clones of a fresh copy
of the project, one DVC cache shared by its workers, an empty compilation cache, the
data downloaded before the clock starts. Each worker runs `make train SHARD=i/N`.
Then every run's history and metrics of one configuration are compared, bit for bit,
with the other's: the thread count must not change a result.

    INITSTUDY_DATA_MIRROR=<folder of the MNIST files> make bench-workers
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from initstudy.params import load_params
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the scaffolding tests share
from workspace import ROOT, Workspace  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(origin: Workspace, scratch: Path, workers: int, threads: int | None) -> tuple[float, float, dict[str, bytes]]:
    """Train the study with `workers` shards at once; return wall and CPU seconds and every run's results."""
    clones = [origin.clone(scratch / f"worker{i}") for i in range(1, workers + 1)]
    for clone in clones:
        clone.run("dvc", "cache", "dir", "--local", str(scratch / "cache"))
        clone.env["JAX_COMPILATION_CACHE_DIR"] = str(scratch / "compiled")
        clone.env.pop("INITSTUDY_THREADS", None)
        if threads:
            clone.env["INITSTUDY_THREADS"] = str(threads)
        clone.repro("download")
    cpu, start = cpu_seconds(), time.perf_counter()
    running = [subprocess.Popen(["make", "-s", "train", f"SHARD={i}/{workers}", f"BIN={Path(sys.executable).parent}"],
                                cwd=clone.path, env=clone.env, stdout=subprocess.DEVNULL)
               for i, clone in enumerate(clones, 1)]
    if any([process.wait() for process in running]):  # wait for every worker, then look
        raise RuntimeError(f"a worker of {workers} failed")
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    results = {str(path.relative_to(clone.path)): path.read_bytes() for clone in clones
               for path in sorted(clone.path.glob("runs/*/*")) if path.name in ("history.csv", "metrics.json")}
    return wall, cpu, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("INITSTUDY_DATA_MIRROR", ROOT / "data/raw/mnist")))
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the study (default: the study's)")
    args = parser.parse_args()
    seeds = args.seeds or load_params(ROOT / "params.yaml").study.seeds
    cores = len(os.sched_getaffinity(0))
    configurations = [(1, None, f"1 worker × all {cores} threads"), (2, 1, "2 workers × 1 thread")]
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        origin = Workspace.create(Path(tmp) / "origin", mirror=str(args.data), study={"seeds": seeds})
        origin.commit("study")
        for workers, threads, label in configurations:
            wall, cpu, runs = train(origin, Path(tmp) / f"{workers}-workers", workers, threads)
            rows.append((label, wall, cpu))
            results.append(runs)
    runs = len(results[0]) // 2
    print(f"Benchmark of {time.strftime('%Y-%m-%d %H:%M')}: {cores} cores; the default study's training, "
          f"{runs} runs (seeds {seeds}), each configuration from a cold start.\n")
    print("| configuration | wall (s) | CPU (s) | CPU / wall | wall ratio |")
    print("|---|---|---|---|---|")
    for label, wall, cpu in rows:
        print(f"| {label} | {wall:.0f} | {cpu:.0f} | {cpu / wall:.2f} | **{wall / rows[0][1]:.2f}×** |")
    same = results[0] == results[1]
    print(f"\nHistories and metrics of all {runs} runs bit-identical between the configurations: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
