"""Aggregation arithmetic on runs whose numbers are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from initstudy.aggregate import load_runs, results_table, summarize
from initstudy.errors import StudyError


def run(initializer: str, seed: int, final: float | None, diverged: bool = False, **extra: float) -> dict:
    """A run's metrics.json; a diverged run may hold null (None) or NaN."""
    return {
        "initializer": initializer, "seed": seed, "diverged": diverged,
        "final_val_accuracy": final, "best_val_accuracy": extra.get("best", final),
        "final_val_loss": extra.get("loss", None if final is None else 1 - final),
    }


RUNS = pd.DataFrame([
    run("he_normal", 0, 0.97, best=0.98), run("he_normal", 1, 0.99, best=0.99),
    run("zeros", 0, 0.1135), run("zeros", 1, 0.1135),
    run("ones", 0, None, diverged=True), run("ones", 1, 0.5),
    run("lecun_normal", 0, math.nan, diverged=True),
])
ORDER = ["zeros", "ones", "he_normal", "lecun_normal"]


def test_statistics_over_seeds() -> None:
    summary = summarize(RUNS, ORDER)
    he = summary["he_normal"]
    assert he["final_val_accuracy"]["mean"] == pytest.approx(0.98)
    assert he["final_val_accuracy"]["std"] == pytest.approx(math.sqrt(2) * 0.01)  # sample std
    assert (he["final_val_accuracy"]["min"], he["final_val_accuracy"]["max"]) == (0.97, 0.99)
    assert he["best_val_accuracy"]["mean"] == pytest.approx(0.985)
    assert he["final_val_loss"]["mean"] == pytest.approx(0.02)
    assert summary["zeros"]["final_val_accuracy"]["std"] == 0.0
    assert list(summary) == ORDER


def test_diverged_runs_are_counted_but_kept_out_of_the_statistics() -> None:
    summary = summarize(RUNS, ORDER)
    ones = summary["ones"]
    assert (ones["runs"], ones["diverged"]) == (2, 1)
    assert ones["final_val_accuracy"] == {"mean": 0.5, "min": 0.5, "max": 0.5}  # no std of one run
    assert summary["lecun_normal"] == {"runs": 1, "diverged": 1}


def test_ranking_by_mean_final_val_accuracy() -> None:
    summary = summarize(RUNS, ORDER)
    assert {n: e.get("rank") for n, e in summary.items()} == {
        "he_normal": 1, "ones": 2, "zeros": 3, "lecun_normal": None
    }


def test_summary_is_strict_json_without_lists() -> None:
    text = json.dumps(summarize(RUNS, ORDER), allow_nan=False)

    def no_lists(value: object) -> bool:
        return not isinstance(value, list) and (
            not isinstance(value, dict) or all(no_lists(v) for v in value.values())
        )

    assert no_lists(json.loads(text))


def test_results_table_lists_best_first() -> None:
    table = results_table(summarize(RUNS, ORDER)).splitlines()
    assert "initializer" in table[0]
    assert "he_normal" in table[2] and "0.9800 ± 0.0141" in table[2]
    assert "lecun_normal" in table[-1]


def test_load_runs_reads_each_run_and_numbers_epochs_from_one(tmp_path: Path) -> None:
    for seed in (0, 1):
        folder = tmp_path / f"zeros-{seed}"
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps(run("zeros", seed, 0.1)))
        (folder / "history.csv").write_text(
            "epoch,accuracy,epoch_seconds,loss,val_accuracy,val_loss\n0,0.1,1.0,2.3,0.1,2.3\n1,0.2,1.0,2.2,0.1,2.2\n"
        )
    runs, epochs = load_runs(tmp_path, ["zeros"], [0, 1])
    assert list(runs.seed) == [0, 1]
    assert list(epochs.epoch) == [1, 2, 1, 2] and list(epochs.seed) == [0, 0, 1, 1]
    assert list(epochs.columns[:3]) == ["initializer", "seed", "epoch"]


def test_a_missing_run_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="zeros-0/metrics.json is missing: run `dvc repro`"):
        load_runs(tmp_path, ["zeros"], [0])
