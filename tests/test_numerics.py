"""Other machines simulated on this one: other OpenBLAS kernels and vector ISAs give the same
bits, and each run records the environment that made them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_stage, write_params
from initstudy.aggregate import environments
from initstudy.numerics import ISA_LEVELS, ONEDNN_ISA, cpu_isa, effective_isa, pin_isa
from workspace import ROOT, command_env

# Every catalogue initializer's default network at seed 0, hashed; the kernels OpenBLAS runs.
# (The collector is kept off the frameworks' objects, which each clear_session would walk again.)
DRAW = """
import gc, hashlib, json, sys
from pathlib import Path
from initstudy.backend import use_backend
from initstudy.datasets import load_split
from initstudy.params import load_params
use_backend("jax", "AVX")
from initstudy.initialization import initial_model
from initstudy.numerics import environment
gc.freeze()
params = load_params(Path(sys.argv[1]))
split = load_split("mnist", Path(sys.argv[2]), train_samples=600, val_samples=10)
hashes = {label: hashlib.sha256(b"".join(w.tobytes() for w in initial_model(
    split, 10, params.networks["mlp"], spec, 0).get_weights())).hexdigest() for label, spec in params.initializers.items()}
print(json.dumps({"kernels": environment("jax")["blas_kernels"], "hashes": hashes}))
"""
# OpenBLAS kernels this CPU can run, by the ISA each needs.
KERNELS = {"Prescott": "SSE4_2", "Nehalem": "SSE4_2", "Sandybridge": "AVX", "Haswell": "AVX2"}
RUNNABLE = [kernel for kernel, isa in KERNELS.items()
            if cpu_isa() and ISA_LEVELS.index(isa) <= ISA_LEVELS.index(cpu_isa())]


@pytest.mark.skipif(len(RUNNABLE) < 3, reason="needs an x86-64 CPU that runs three OpenBLAS kernels")
def test_every_initializer_draws_the_same_bytes_under_any_blas_kernel(mnist_prepared: Path) -> None:
    """A host that sets OPENBLAS_CORETYPE, as OpenBLAS would pick a kernel on another CPU: the
    package overrides it, so orthogonal's QR and LSUV run on the pinned kernel and every
    initializer draws the same bytes (without the pin, orthogonal's differ)."""
    processes = {kernel: subprocess.Popen(  # one process per kernel, all at once
        [sys.executable, "-c", DRAW, str(ROOT / "params.yaml"), str(mnist_prepared)],
        env=dict(command_env(ROOT.parent), OPENBLAS_CORETYPE=kernel), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for kernel in RUNNABLE}
    try:
        outputs = {kernel: process.communicate(timeout=600) for kernel, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
            process.wait()
    drawn = {}
    for kernel, (stdout, stderr) in outputs.items():
        assert processes[kernel].returncode == 0, stderr
        drawn[kernel] = json.loads(stdout.strip().splitlines()[-1])
    first = drawn[RUNNABLE[0]]
    assert {"orthogonal", "lsuv", "he_normal"} <= set(first["hashes"])
    assert first["kernels"] == ["Sandybridge"]
    for kernel in RUNNABLE[1:]:
        assert drawn[kernel] == first, kernel


def train_with_cap(folder: Path, mnist_prepared: Path, backend: str, cap: str | None, cpu_isa_param: str = "AVX"
                   ) -> dict[str, bytes]:
    """One short run, its compiled code capped by the host at `cap` (None: this CPU as it is),
    compiled afresh as on another machine (a compilation cache of its own)."""
    write_params(folder, data={"train_samples": 2000, "val_samples": 500},
                 train={"epochs": 2, "backend": backend, "cpu_isa": cpu_isa_param})
    env = {"XLA_FLAGS": "", "ONEDNN_MAX_CPU_ISA": "ALL", "JAX_COMPILATION_CACHE_DIR": str(folder / "compiled")}
    if cap:  # a CPU without the wider instructions: neither XLA's code nor oneDNN's kernels use them
        env |= {"XLA_FLAGS": f"--xla_cpu_max_isa={cap}", "ONEDNN_MAX_CPU_ISA": ONEDNN_ISA[cap]}
    result = run_stage(folder, "train", "--network", "mlp", "--initializer", "he_normal", "--seed", "0",
                       "--data", str(mnist_prepared), "--out", "run", "--log", "log.json", env=env)
    assert result.returncode == 0, result.stderr
    return {path.name: path.read_bytes() for path in sorted((folder / "run").iterdir())}


@pytest.mark.training
@pytest.mark.skipif(cpu_isa() not in ("AVX2", "AVX512"), reason="needs an x86-64 CPU with AVX2")
@pytest.mark.parametrize("backend, caps", [("jax", ["AVX2", "AVX"]), ("tensorflow", ["AVX"])])
def test_a_run_is_the_same_bits_on_cpus_with_other_vector_isas(
    tmp_path: Path, mnist_prepared: Path, backend: str, caps: list[str]
) -> None:
    """This CPU as it is, and as hosts with only AVX2 or only AVX would run it: with train.cpu_isa
    at its default, AVX, every output file is the same; with native, the CPU decides the bits."""
    here = train_with_cap(tmp_path / "here", mnist_prepared, backend, None)
    assert json.loads(here["environment.json"])["cpu_isa"] == "AVX"
    assert set(here) == {"environment.json", "history.csv", "metrics.json", "model.keras"}
    for cap in caps:
        assert train_with_cap(tmp_path / cap, mnist_prepared, backend, cap) == here, cap
    native = train_with_cap(tmp_path / "native", mnist_prepared, backend, None, "native")
    assert json.loads(native["environment.json"])["cpu_isa"] == cpu_isa()
    assert native["history.csv"] != here["history.csv"]  # FMA and wider vectors round otherwise


@pytest.mark.skipif(cpu_isa() is None, reason="the pins apply on x86-64 only")
def test_the_isa_in_effect_is_the_lowest_of_param_host_cap_and_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")  # oneDNN's name for no cap
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1 --xla_cpu_max_isa=sse4_2")
    assert effective_isa("AVX") == "SSE4_2"  # a host that caps lower keeps its cap, in any case
    pin_isa("AVX")
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1 --xla_cpu_max_isa=SSE4_2"
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX512")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # oneDNN's name of a level above them all
    pin_isa("AVX")
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX" and os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    assert effective_isa("AVX") == "SSE4_2"  # a lower oneDNN cap counts too
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX512_VNNI")
    pin_isa("native")  # native leaves the host's settings alone
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX512_VNNI" and os.environ["ONEDNN_MAX_CPU_ISA"] == "ALL"
    assert effective_isa("native") == cpu_isa()


def write_run(folder: Path, environment: dict | None) -> None:
    folder.mkdir(parents=True)
    if environment is not None:
        (folder / "environment.json").write_text(json.dumps(environment))


def test_aggregate_warns_when_runs_come_from_different_environments(tmp_path: Path) -> None:
    base = {"backend": "jax", "jax": "0.10.2", "cpu_isa": "AVX", "blas_kernels": ["Sandybridge"]}
    runs = [("mlp", "zeros", 0), ("mlp", "zeros", 1), ("mlp", "ones", 0)]
    write_run(tmp_path / "mlp-zeros-0", base)
    write_run(tmp_path / "mlp-zeros-1", base)
    write_run(tmp_path / "mlp-ones-0", base)
    assert environments(tmp_path, runs) == []
    (tmp_path / "mlp-ones-0" / "environment.json").write_text(json.dumps(base | {"cpu_isa": "AVX2"}))
    (warning,) = environments(tmp_path, runs)
    assert warning.startswith("the runs were made in different environments: cpu_isa is")
    assert '"AVX" in 2 run(s)' in warning and '"AVX2" in 1 run(s), e.g. mlp-ones-0' in warning
    (tmp_path / "mlp-ones-0" / "environment.json").unlink()
    assert environments(tmp_path, runs) == ["1 run(s) record no environment.json, e.g. mlp-ones-0"]
