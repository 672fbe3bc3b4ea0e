"""Benchmark the project's training path against the plain Keras loop, side by side.

Run with `make bench` (add `--skip-study` for the quick part only). Everything is
measured in this one run and reported as ratios; the output is a markdown report.
`--data` is the folder of the downloaded MNIST files; the benchmark prepares them itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from initstudy.datasets import prepare_dataset
from initstudy.numerics import BLAS_KERNEL, NUMPY_DISPATCH, cpu_model
from initstudy.params import load_params
from initstudy.timings import PHASES, gather
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the scaffolding tests share
from workspace import ROOT, Workspace, command_env, update_params  # noqa: E402

STAGES = ROOT / "src" / "stages"
AFTER_TRAINING = ("diagnose", "aggregate", "plots", "plots_init")


# Runs a command and writes its wall seconds and peak memory (KiB) to argv[1]. The kernel starts
# a process's peak at the peak of the process it was forked from: through this small launcher,
# the command's peak is its own, not this benchmark's.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"wall": time.perf_counter() - start, "peak": usage.ru_maxrss}, out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; return its wall seconds, peak resident memory in MiB, and stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.NamedTemporaryFile("r") as measured:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, measured.name, *cmd], cwd=cwd, env=env,
                              stdout=out, stderr=subprocess.STDOUT, text=True)
        out.seek(0)
        text = out.read()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{text}")
        result = json.loads(measured.read())
    return result["wall"], result["peak"] / 1024, text


def clean_env() -> dict[str, str]:
    """This environment without the project's BLAS pins, for code that does not import the project."""
    return {key: value for key, value in os.environ.items() if key not in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")}


def child_json(code: str, env: dict[str, str]) -> Any:
    """Run Python `code` in a fresh process; return the JSON of its last line."""
    _, _, out = run_measured([sys.executable, "-c", code], ROOT, env)
    return json.loads(out.strip().splitlines()[-1])


MATMUL = """
import json, time, numpy as np
a = np.random.default_rng(0).random((128, 784), dtype=np.float32)
b = np.random.default_rng(1).random((784, 256), dtype=np.float32)
reps, best = 200, float("inf")
for _ in range(5):
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    best = min(best, time.perf_counter() - start)
print(json.dumps(2 * 128 * 784 * 256 * reps / best / 1e9))
"""


def matmul_gflops(kernel: str | None = None) -> float:
    """NumPy's float32 rate on this machine for the model's largest product (128×784 @ 784×256),
    with the kernel OpenBLAS picks for this CPU, or the named one (Sandybridge: AVX without FMA,
    the instructions train.cpu_isa AVX leaves XLA)."""
    return child_json(MATMUL, clean_env() | ({"OPENBLAS_CORETYPE": kernel} if kernel else {}))


def model_gflop_per_epoch(sizes: list[int], n_train: int, n_val: int) -> float:
    """FLOPs of one epoch of a dense network with these layer sizes (input first).

    Per sample and weight: 2 for the forward pass, 2 for the weight gradient and 2 for
    the gradient of the layer's input, which the first layer does not need; 2 per weight
    for each validation sample.
    """
    weights = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    first_kernel = sizes[0] * sizes[1]
    return ((6 * weights - 2 * first_kernel) * n_train + 2 * weights * n_val) / 1e9


def plain_epochs(folder: Path, data: Path) -> tuple[list[float], float]:
    _, _, out = run_measured(
        [sys.executable, str(ROOT / "bench/plain_loop.py"), "--params", "params.yaml", "--data", str(data)],
        folder, command_env(folder))
    run = json.loads(out.strip().splitlines()[-1])
    return run["epoch_seconds"], run["val_accuracy"]


def project_epochs(folder: Path, data: Path) -> tuple[list[float], float, float, float]:
    """The train stage as DVC runs it: per-epoch seconds, val accuracy, stage wall and peak MiB."""
    wall, peak, _ = run_measured(
        [sys.executable, str(STAGES / "train.py"), "--network", "mlp", "--initializer", "glorot_uniform", "--seed", "0",
         "--data", str(data), "--out", "run", "--log", "log.json"], folder, command_env(folder))
    seconds = json.loads((folder / "log.json").read_text())["epoch_seconds"]
    return seconds, float(pd.read_csv(folder / "run/history.csv").val_accuracy.iloc[-1]), wall, peak


def parse_mnist(data: Path) -> dict[str, int | float]:
    """Parse the IDX files as the prepare stage does, then load the prepared arrays as a
    training stage does, in a fresh process. Returns the seconds of each, the pixels per
    image and the numbers of training and validation samples."""
    code = ("import json, sys, tempfile, time; from pathlib import Path; "
            "from initstudy.datasets import load_split, prepare_dataset\n"
            "with tempfile.TemporaryDirectory() as out:\n"
            "    start = time.perf_counter(); prepare_dataset('mnist', Path(sys.argv[1]), Path(out))\n"
            "    parsed = time.perf_counter(); split = load_split('mnist', Path(out)); end = time.perf_counter()\n"
            "print(json.dumps({'parse_seconds': parsed - start, 'seconds': end - parsed, "
            "'pixels': split.x_train[0].size, 'train': len(split.x_train), 'val': len(split.x_val)}))")
    _, _, out = run_measured([sys.executable, "-c", code, str(data)], ROOT, command_env(ROOT.parent))
    return json.loads(out.strip().splitlines()[-1])


def median_steady(times: list[float]) -> float:
    return statistics.median(times[1:] if len(times) > 1 else times)


def spread(values: list[float], fmt: str) -> str:
    """The median of values, with their range when there are several."""
    mid = format(statistics.median(values), fmt)
    return mid if len(values) == 1 else f"{mid} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def default_network():
    """The network of the default study (its first and only one)."""
    params = load_params(ROOT / "params.yaml")
    return params.networks[params.study.networks[0]]


def epoch_section(data: Path, prepared: Path, epochs: int, rounds: int, scratch: Path) -> tuple[list[str], float, float]:
    """Plain loop, project path on TensorFlow and on JAX, interleaved over several rounds;
    also returns the floor epoch (s) and the JAX path's steady epoch (s)."""
    rate, avx_rate = matmul_gflops(), matmul_gflops(BLAS_KERNEL)
    parsed = parse_mnist(data)
    sizes = [parsed["pixels"], *default_network().hidden_units, 10]
    samples = parsed["train"], parsed["val"]
    gflop = model_gflop_per_epoch(sizes, *samples)
    floor, avx_floor = gflop / rate, gflop / avx_rate
    names = {"plain": "plain loop: default compile()/fit(), TensorFlow",
             "tensorflow": "project path, tensorflow", "jax": "project path, jax"}
    for name in names:
        (scratch / name).mkdir()
        (scratch / name / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        backend = {} if name == "plain" else {"backend": name}  # the plain loop is TensorFlow by definition
        update_params(scratch / name / "params.yaml", train={"epochs": epochs, **backend},
                      study={"initializers": ["glorot_uniform"], "seeds": [0]})
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(rounds):
        times, acc = plain_epochs(scratch / "plain", prepared)
        runs["plain"].append({"times": times, "acc": acc})
        for backend in ("tensorflow", "jax"):
            times, acc, wall, peak = project_epochs(scratch / backend, prepared)
            runs[backend].append({"times": times, "acc": acc, "overhead": wall - sum(times), "peak": peak})
    plain_steady = [median_steady(run["times"]) for run in runs["plain"]]
    plain_total = [sum(run["times"]) for run in runs["plain"]]
    lines = [
        f"NumPy float32 matmul rate: {rate:.0f} GFLOP/s; default model {'-'.join(map(str, sizes))}: "
        f"{gflop:.1f} GFLOP per epoch ({samples[0]:,} training + {samples[1]:,} validation "
        f"samples) ⇒ arithmetic floor {floor:.2f} s per epoch. With AVX and no FMA (OpenBLAS's "
        f"{BLAS_KERNEL} kernel, the instructions `train.cpu_isa: AVX` leaves XLA): {avx_rate:.0f} GFLOP/s, "
        f"floor {avx_floor:.2f} s.",
        "",
        f"Epoch times of the default model, {epochs} epochs per run, {rounds} rounds (plain, tensorflow, "
        f"jax in turn each round). Steady = median of epochs 2..{epochs} of a run; each cell gives the "
        "median over rounds and, in brackets, the range; speed-ups compare runs of the same round, "
        "steady epochs and all epochs (the first one's compilation included):",
        "",
        "| path | first epoch (s) | steady epoch (s) | speed-up vs plain, steady | speed-up, all epochs | "
        "× floor | × AVX floor | val acc | stage overhead (s) | stage peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label in names.items():
        steady = [median_steady(run["times"]) for run in runs[name]]
        ratios = [p / s for p, s in zip(plain_steady, steady)]
        total_ratios = [p / sum(run["times"]) for p, run in zip(plain_total, runs[name])]
        accs = sorted({f"{run['acc']:.4f}" for run in runs[name]})
        extra = ("– | –" if name == "plain" else
                 f"{spread([run['overhead'] for run in runs[name]], '.1f')} | "
                 f"{max(run['peak'] for run in runs[name]):.0f}")
        lines.append(f"| {label} | {spread([run['times'][0] for run in runs[name]], '.2f')} | "
                     f"{spread(steady, '.2f')} | **{spread(ratios, '.2f')}×** | {spread(total_ratios, '.2f')}× | "
                     f"**{statistics.median(steady) / floor:.2f}** | {statistics.median(steady) / avx_floor:.2f} | "
                     f"{', '.join(accs)} | {extra} |")
    lines += ["", "Stage overhead = stage wall time − its epochs' time: process start, imports, "
              "data loading, the first call's tracing, saving. Peak RSS is the largest of the rounds."]
    lines.append(f"Loading the prepared arrays (memory-mapped float32 .npy, nothing converted): {parsed['seconds']:.3f} s "
                 f"per stage; parsing the four gzipped IDX files, as the `prepare` stage does once: "
                 f"{parsed['parse_seconds']:.2f} s.")
    jax_steady = statistics.median(median_steady(run["times"]) for run in runs["jax"])
    return lines, floor, jax_steady


QR = """
import hashlib, json, os, sys, time
os.environ["KERAS_BACKEND"] = "jax"
sys.modules["tensorflow"] = None
import keras, numpy as np
from threadpoolctl import threadpool_info
keras.utils.set_random_seed(0)
init = keras.initializers.Orthogonal()
first = np.asarray(init((784, 256)))
start = time.perf_counter()
for _ in range(20):
    np.asarray(init((784, 256)))
print(json.dumps({"seconds": (time.perf_counter() - start) / 20, "sha": hashlib.sha256(first.tobytes()).hexdigest(),
                  "kernel": sorted({lib.get("architecture") for lib in threadpool_info()})}))
"""


LOOPS = """
import hashlib, json, time, numpy as np
from numpy._core._multiarray_umath import __cpu_features__
images = np.random.default_rng(0).integers(0, 256, (60000, 784), dtype=np.uint8)
x = np.random.default_rng(1).normal(size=10**6)
def best(f):
    times = []
    for _ in range(5):
        start = time.perf_counter(); f(); times.append(time.perf_counter() - start)
    return min(times)
print(json.dumps({"scale": best(lambda: images.astype(np.float32) / 255), "exp": best(lambda: np.exp(x)),
                  "sha": hashlib.sha256(np.exp(x).tobytes()).hexdigest(),
                  "level": [l for l in ("X86_V2", "X86_V3", "X86_V4") if __cpu_features__.get(l)][-1]}))
"""


def pins_section(data: Path, epochs: int, rounds: int, scratch: Path) -> list[str]:
    """What each pin of numerics.py costs: the orthogonal QR on the pinned OpenBLAS kernel
    against the CPU's own, and the JAX epoch at each train.cpu_isa, interleaved over rounds."""
    qr: dict[str, list[dict]] = {"CPU's own": [], BLAS_KERNEL: []}
    for _ in range(rounds):
        for kernel in qr:
            env = clean_env() | {"OPENBLAS_NUM_THREADS": "1"}
            qr[kernel].append(child_json(QR, env if kernel == "CPU's own" else env | {"OPENBLAS_CORETYPE": kernel}))
    own = statistics.median(run["seconds"] for run in qr["CPU's own"])
    lines = ["`keras.initializers.Orthogonal()((784, 256))` on JAX, seed 0, one OpenBLAS thread, "
             f"mean of 20 draws, median of {rounds} rounds:", "",
             "| OpenBLAS kernel | ms per draw | × CPU's own | sha256 of the draw |", "|---|---|---|---|"]
    for kernel, runs in qr.items():
        seconds = statistics.median(run["seconds"] for run in runs)
        lines.append(f"| {kernel} ({', '.join(runs[0]['kernel'])}) | {seconds * 1e3:.1f} | {seconds / own:.2f} | "
                     f"{runs[0]['sha'][:12]} |")
    loops: dict[str, list[dict]] = {"CPU's own": [], "baseline": []}
    for _ in range(rounds):
        for name in loops:
            env = clean_env() | ({"NPY_DISABLE_CPU_FEATURES": NUMPY_DISPATCH} if name == "baseline" else {})
            loops[name].append(child_json(LOOPS, env))
    lines += ["", f"NumPy's loops, its CPU dispatch against the pinned baseline, best of 5, median of {rounds} rounds: "
              "MNIST's training images to float32 / 255 (47 M values), and `np.exp` of 10⁶ float64:", "",
              "| NumPy loops | images / 255 (ms) | exp (ms) | exp's sha256 |", "|---|---|---|---|"]
    for name, runs in loops.items():
        lines.append(f"| {name} ({runs[0]['level']}) | {statistics.median(r['scale'] for r in runs) * 1e3:.1f} | "
                     f"{statistics.median(r['exp'] for r in runs) * 1e3:.1f} | {runs[0]['sha'][:12]} |")
    isas = ["AVX", "native", "SSE4_2"]
    for isa in isas:
        (scratch / isa).mkdir()
        (scratch / isa / "params.yaml").write_text((ROOT / "params.yaml").read_text())
        update_params(scratch / isa / "params.yaml", train={"epochs": epochs, "cpu_isa": isa})
    runs: dict[str, list[dict]] = {isa: [] for isa in isas}
    for _ in range(rounds):
        for isa in isas:
            times, acc, _, _ = project_epochs(scratch / isa, data)
            history = (scratch / isa / "run" / "history.csv").read_bytes()
            runs[isa].append({"steady": median_steady(times), "acc": acc, "history": history,
                              "isa": json.loads((scratch / isa / "run" / "environment.json").read_text())["cpu_isa"]})
    native = [run["steady"] for run in runs["native"]]
    lines += ["", f"The JAX epoch of the default model at each `train.cpu_isa`, {epochs} epochs per run, {rounds} "
              "rounds (the settings in turn each round); steady = median of epochs 2.., ratio to native in the same round:",
              "", "| train.cpu_isa (in effect) | steady epoch (s) | × native | final val acc | history.csv |",
              "|---|---|---|---|---|"]
    for isa in isas:
        steady = [run["steady"] for run in runs[isa]]
        same = "the same bytes as AVX" if runs[isa][0]["history"] == runs["AVX"][0]["history"] else "differs from AVX"
        lines.append(f"| {isa} ({runs[isa][0]['isa']}) | {spread(steady, '.3f')} | "
                     f"**{spread([a / b for a, b in zip(steady, native)], '.2f')}×** | {runs[isa][0]['acc']:.4f} | "
                     f"{'–' if isa == 'AVX' else same} |")
    return lines


def stage_section() -> list[str]:
    """No-op repro of this repo, and the aggregate and plotting stages on its results."""
    env = command_env(ROOT.parent)
    status = subprocess.run(["dvc", "status", "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
    if status.returncode != 0 or json.loads(status.stdout or "{}"):
        return ["Pipeline overhead: skipped, this workspace is not up to date (run `dvc repro` first)."]
    noop = [run_measured(["dvc", "repro"], ROOT, env)[0] for _ in range(3)]
    lines = [f"No-op `dvc repro` of the default study (36 train stages): median {statistics.median(noop):.2f} s "
             f"of 3 ({', '.join(f'{t:.2f}' for t in noop)}).", ""]
    probe = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
             "print('frameworks imported:', [m for m in ('tensorflow', 'jax', 'keras') if m in sys.modules])")
    with tempfile.TemporaryDirectory() as out:
        for stage, args in (("aggregate", ["--out", out]), ("plots", ["--out", out]),
                            ("plots_init", ["--out", out])):
            wall, peak, text = run_measured(
                [sys.executable, "-c", probe, str(STAGES / f"{stage}.py"), *args], ROOT, env)
            lines.append(f"- `{stage}` stage: {wall:.2f} s, peak {peak:.0f} MiB, {text.strip().splitlines()[-1]}")
    return lines


def short_study(scratch: Path, data: Path, name: str, **params: dict) -> Workspace:
    """A fresh copy of the project with some params changed, committed (a worker of `make study`
    is a worktree of HEAD), its data downloaded and prepared."""
    repo = Workspace.create(scratch / name, mirror=str(data), **params)
    repo.commit("the study")
    repo.repro("prepare")
    return repo


def runs_section(data: Path, scratch: Path, steady_epoch: float) -> list[str]:
    """Where a short run's time goes inside a real `dvc repro`: 12 one-epoch runs of the default
    model, from the train stages' logs (each phase from the process's start) and the repro's wall."""
    initializers = load_params(ROOT / "params.yaml").study.initializers[:12]
    repo = short_study(scratch, data, "short", study={"initializers": initializers, "seeds": [0]}, train={"epochs": 1})
    stages = [f"train@mlp-{name}-0" for name in initializers]
    wall = run_measured(["dvc", "repro", *stages], repo.path, repo.env)[0]
    logs = gather(repo.path / "logs")
    medians = {phase: logs[f"{phase}_seconds"].median() for phase in PHASES}
    first_call = medians["fit"] - steady_epoch
    dvc_own = (wall - logs.process_seconds.sum()) / len(logs)
    outside = logs.process_seconds.median() - medians["fit"] + dvc_own
    lines = [f"A study of {len(logs)} one-epoch runs of the default model through `dvc repro` ({wall:.1f} s wall): "
             "each run's phases from its log, median over the runs (the first compiles its training step, "
             "the others load it from the compilation cache), DVC's own time = (the repro's wall − the train "
             "processes' walls) / runs:", "",
             "| phase | s per run |", "|---|---|"]
    lines += [f"| {phase} | {medians[phase]:.2f} |" for phase in PHASES]
    lines += [f"| DVC between and around the train processes | {dvc_own:.2f} |", "",
              f"Outside `fit`: **{outside:.2f} s per run** (target ≤ 2.5 s). Inside `fit`, the epoch is "
              f"{steady_epoch:.2f} s steady (the epoch comparison above), so the first call's tracing and "
              f"loading of the compiled step add about {first_call:.2f} s."]
    return lines


def study_section(data: Path, seeds: list[int], scratch: Path, floor: float) -> list[str]:
    """The default study as `make study` trains it, with one worker and with one per CPU,
    each from a fresh copy and an empty compilation cache, against the study's floor; the
    stages after training are then rerun alone, to tell the training's share of the wall."""
    cores = len(os.sched_getaffinity(0))
    rows, results = [], []
    for workers in dict.fromkeys((1, cores)):
        repo = short_study(scratch, data, f"study-{workers}", study={"seeds": seeds})
        repo.env["JAX_COMPILATION_CACHE_DIR"] = str(scratch / f"compiled-{workers}")
        wall = run_measured([sys.executable, "-m", "initstudy.parallel", "--workers", str(workers)],
                            repo.path, repo.env)[0]
        after = run_measured(["dvc", "repro", "--force", "--single-item", *AFTER_TRAINING], repo.path, repo.env)[0]
        rows.append((workers, wall, after))
        results.append({path.relative_to(repo.path): path.read_bytes() for path in sorted(repo.path.glob("runs/*/*"))})
    params = repo.params()
    runs = len(params["study"]["initializers"]) * len(seeds)
    study_floor = runs * params["train"]["epochs"] * floor
    lines = [f"The default study, {runs} runs × {params['train']['epochs']} epochs (seeds {seeds}), through "
             "`python -m initstudy.parallel` (what `make study` runs) from a fresh copy with its data prepared and "
             f"an empty compilation cache: every stage after `prepare`. The stages after training "
             f"({', '.join(AFTER_TRAINING)}) were then rerun alone; training = wall − their time. "
             f"Floor = runs × epochs × the floor epoch above = {study_floor:.0f} s.", "",
             "| workers × threads | wall (s) | stages after training (s) | training (s) | training × one worker | "
             "training × the study's floor | wall × the study's floor |", "|---|---|---|---|---|---|---|"]
    for workers, wall, after in rows:
        lines.append(f"| {workers} × {max(1, cores // workers)} | {wall:.0f} | {after:.0f} | {wall - after:.0f} | "
                     f"{(wall - after) / (rows[0][1] - rows[0][2]):.2f} | **{(wall - after) / study_floor:.2f}** | "
                     f"{wall / study_floor:.2f} |")
    if len(results) > 1:
        lines += ["", f"Every run's outputs bit-identical between the two: {results[0] == results[-1]}."]
    return lines


def report(lines: list[str]) -> None:
    """Print a section of the report as soon as it is measured, so a failure later keeps it."""
    print("\n".join(lines) + "\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default_data = os.environ.get("INITSTUDY_DATA_MIRROR", str(ROOT / "data/raw/mnist"))
    parser.add_argument("--data", type=Path, default=Path(default_data), help="folder of the MNIST files")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run of the per-epoch comparison")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the per-epoch comparison")
    parser.add_argument("--study-seeds", type=int, nargs="+",
                        help="seeds of the whole-study comparison (default: the study's, all of it)")
    parser.add_argument("--skip-study", action="store_true", help="skip the whole-study comparison")
    parser.add_argument("--only-pins", action="store_true", help="measure only the cost of the numerics pins")
    args = parser.parse_args()
    cpu = cpu_model()
    report([f"Benchmark of {time.strftime('%Y-%m-%d %H:%M')}: {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}."])
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        prepared = scratch / "prepared"
        prepare_dataset("mnist", args.data, prepared)
        if not args.only_pins:
            epochs, floor, steady = epoch_section(args.data, prepared, args.epochs, args.rounds, scratch)
            report(epochs)
            report(runs_section(args.data, scratch, steady))
        report(pins_section(prepared, args.epochs, args.rounds, scratch))
        if not args.only_pins:
            report(stage_section())
        if not (args.skip_study or args.only_pins):
            seeds = args.study_seeds or load_params(ROOT / "params.yaml").study.seeds
            report(study_section(args.data, seeds, scratch, floor))


if __name__ == "__main__":
    main()
