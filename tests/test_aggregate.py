"""Aggregation arithmetic on runs whose numbers are known."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from initstudy.aggregate import (
    across_networks,
    analyze_runs,
    converged_epochs,
    headline,
    initializer_spread,
    load_runs,
    results_table,
    summarize,
    summarize_study,
)
from initstudy.params import ModelParams
from initstudy.errors import StudyError

# val accuracy per epoch of each (initializer, seed); train accuracy is val + 0.01,
# train loss 0.1, val loss 0.3.
CURVES = {
    ("he_normal", 0): [0.90, 0.96, 0.97],
    ("he_normal", 1): [0.92, 0.98, 0.99],
    ("he_uniform", 0): [0.91, 0.95, 0.96],
    ("he_uniform", 1): [0.93, 0.96, 0.98],
    ("zeros", 0): [0.1135, 0.1135, 0.1135],
    ("zeros", 1): [0.1135, 0.1135, 0.1135],
    ("ones", 0): [0.10, math.nan, math.nan],
    ("ones", 1): [0.10, 0.20, 0.50],
}
DIVERGED = {("ones", 0)}
ORDER = ["zeros", "ones", "he_uniform", "he_normal"]
TARGET = 0.97
INIT = pd.DataFrame([
    {"network": "mlp", "initializer": i, "seed": s, "layer": layer, "activation_mean": 0.1 * layer, "activation_std": s + layer,
     "inactive_fraction": 0.0, "gradient_norm": 2.0 * layer}
    for i in ORDER for s in (0, 1) for layer in (1, 2)
])


def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    epochs = pd.DataFrame([
        {"network": "mlp", "initializer": i, "seed": s, "epoch": e + 1, "loss": 0.1, "accuracy": v + 0.01,
         "val_loss": 0.3, "val_accuracy": v}
        for (i, s), curve in CURVES.items() for e, v in enumerate(curve)
    ])
    runs = pd.DataFrame([
        {"network": "mlp", "initializer": i, "seed": s, "diverged": (i, s) in DIVERGED, "final_val_accuracy": curve[-1],
         "best_val_accuracy": max(v for v in curve if not math.isnan(v)), "final_val_loss": 0.3}
        for (i, s), curve in CURVES.items()
    ])
    return analyze_runs(runs, epochs, TARGET), epochs


def test_per_run_convergence_stability_and_gap() -> None:
    runs, _ = tables()
    he1 = runs.set_index(["initializer", "seed"]).loc[("he_normal", 1)]
    assert he1.epochs_to_target == 2
    assert he1.val_accuracy_auc == pytest.approx((0.92 + 0.98 + 0.99) / 3)
    assert he1.jitter == pytest.approx((0.06 + 0.01) / 2)
    assert he1.accuracy_gap == pytest.approx(0.01) and he1.loss_gap == pytest.approx(0.2)
    he_uniform0 = runs.set_index(["initializer", "seed"]).loc[("he_uniform", 0)]
    assert math.isnan(he_uniform0.epochs_to_target)  # never reached 0.97


def test_statistics_over_seeds_with_confidence_interval() -> None:
    summary = summarize(*tables(), ORDER, "he_normal", INIT)["initializers"]
    final = summary["he_normal"]["final_val_accuracy"]
    assert final["mean"] == pytest.approx(0.98)
    assert final["std"] == pytest.approx(math.sqrt(2) * 0.01)  # sample std of 0.97, 0.99
    assert (final["min"], final["max"]) == (0.97, 0.99)
    half = 12.706204736 * math.sqrt(2) * 0.01 / math.sqrt(2)  # t(0.975, df=1) · s / √n
    assert final["ci95_low"] == pytest.approx(0.98 - half) and final["ci95_high"] == pytest.approx(0.98 + half)
    assert summary["he_normal"]["best_val_accuracy"]["mean"] == pytest.approx(0.98)
    assert summary["zeros"]["final_val_accuracy"]["std"] == 0.0
    assert list(summary) == ORDER


def test_convergence_stability_generalization_per_initializer() -> None:
    summary = summarize(*tables(), ORDER, "he_normal", INIT)["initializers"]
    he = summary["he_normal"]
    assert he["convergence"] == pytest.approx(
        {"epochs_to_target": 2.5, "reached_target": 2, "val_accuracy_auc": (0.9 + 0.96 + 0.97 + 0.92 + 0.98 + 0.99) / 6}
    )
    spread = sum(stats.tstd([a, b]) for a, b in zip(CURVES[("he_normal", 0)], CURVES[("he_normal", 1)])) / 3
    assert he["stability"]["epoch_spread"] == pytest.approx(spread)
    assert he["generalization"] == pytest.approx({"accuracy_gap": 0.01, "loss_gap": 0.2})
    assert summary["zeros"]["convergence"]["reached_target"] == 0
    assert "epochs_to_target" not in summary["zeros"]["convergence"]


def test_welch_test_against_the_reference_by_hand() -> None:
    summary = summarize(*tables(), ORDER, "he_normal", INIT)
    a, b = [0.96, 0.98], [0.97, 0.99]  # he_uniform, he_normal final val accuracies
    var_a, var_b = stats.tvar(a) / 2, stats.tvar(b) / 2
    t = (sum(a) / 2 - sum(b) / 2) / math.sqrt(var_a + var_b)
    df = (var_a + var_b) ** 2 / (var_a**2 + var_b**2)  # Welch–Satterthwaite, n − 1 = 1
    expected = 2 * stats.t.sf(abs(t), df)
    vs = summary["initializers"]["he_uniform"]["vs_reference"]
    assert vs["difference"] == pytest.approx(-0.01) and vs["p_value"] == pytest.approx(expected)
    assert "vs_reference" not in summary["initializers"]["he_normal"]
    he = summary["uniform_vs_normal"]["he"]
    assert (he["uniform"], he["normal"]) == pytest.approx((0.97, 0.98))
    assert he["difference"] == pytest.approx(0.01) and he["p_value"] == pytest.approx(expected)


def test_the_network_at_init_is_averaged_over_seeds_per_layer() -> None:
    init = summarize(*tables(), ORDER, "he_normal", INIT)["initializers"]["zeros"]["init"]
    assert init["layer_2"] == pytest.approx(
        {"activation_mean": 0.2, "activation_std": 2.5, "inactive_fraction": 0.0, "gradient_norm": 4.0}
    )


def test_diverged_runs_are_counted_but_kept_out_of_the_statistics() -> None:
    summary = summarize(*tables(), ORDER, "he_normal", INIT)["initializers"]
    ones = summary["ones"]
    assert (ones["runs"], ones["diverged"]) == (2, 1)
    assert ones["final_val_accuracy"] == {"mean": 0.5, "min": 0.5, "max": 0.5}  # one run: no std, no CI
    assert ones["stability"]["jitter"] == pytest.approx(0.2)


def test_the_epoch_table_for_plots_holds_the_converged_runs_only() -> None:
    runs, epochs = tables()
    kept = converged_epochs(runs, epochs)
    assert set(zip(kept.initializer, kept.seed)) == set(zip(runs.initializer, runs.seed)) - DIVERGED
    assert len(kept) == len(epochs) - (epochs.initializer == "ones").sum() // 2  # ones-0 of ones' 2 runs
    assert list(kept.columns) == list(epochs.columns)


def test_an_initializer_whose_runs_all_diverged_has_counts_only() -> None:
    runs, epochs = tables()
    runs.loc[runs.initializer == "ones", "diverged"] = True
    ones = summarize(runs, epochs, ORDER, "he_normal", INIT)["initializers"]["ones"]
    assert {k: v for k, v in ones.items() if k != "init"} == {"runs": 2, "diverged": 2}


def test_ranking_by_mean_final_val_accuracy() -> None:
    summary = summarize(*tables(), ORDER, "he_normal", INIT)["initializers"]
    assert {n: e.get("rank") for n, e in summary.items()} == {
        "he_normal": 1, "he_uniform": 2, "ones": 3, "zeros": 4
    }


def test_summary_is_strict_json_without_lists() -> None:
    text = json.dumps(summarize(*tables(), ORDER, "he_normal", INIT), allow_nan=False)

    def no_lists(value: object) -> bool:
        return not isinstance(value, list) and (
            not isinstance(value, dict) or all(no_lists(v) for v in value.values())
        )

    assert no_lists(json.loads(text))


def two_networks() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The runs on "mlp", and the same runs again on a deeper "deep", he_normal 0.1 lower there."""
    runs, epochs = tables()
    deeper = lambda frame, column: frame.assign(network="deep", **{column: frame[column] - 0.1 * (frame.initializer == "he_normal")})
    runs = pd.concat([runs, deeper(runs, "final_val_accuracy")], ignore_index=True)
    epochs = pd.concat([epochs, deeper(epochs, "val_accuracy")], ignore_index=True)
    init = pd.concat([INIT, INIT.assign(network="deep")], ignore_index=True)
    summary = summarize_study(runs, epochs, ["mlp", "deep"], ORDER, "he_normal", init)
    return runs, epochs, summary


def test_headline_is_the_mean_final_accuracy_per_network_and_initializer() -> None:
    *_, summary = two_networks()
    top = headline(summary)
    assert top["mlp"] == {"zeros": pytest.approx(0.1135), "ones": pytest.approx(0.5),
                          "he_uniform": pytest.approx(0.97), "he_normal": pytest.approx(0.98)}
    assert top["deep"]["he_normal"] == pytest.approx(0.88) and list(top) == ["mlp", "deep"]


def test_each_network_is_summarized_alone_and_p_values_are_adjusted_over_the_study() -> None:
    runs, epochs, summary = two_networks()
    mlp = summarize(*tables(), ORDER, "he_normal", INIT)
    for name in ORDER:
        for key in ("final_val_accuracy", "rank", "convergence"):
            assert summary["networks"]["mlp"]["initializers"][name].get(key) == mlp["initializers"][name].get(key)
    tests = [e["vs_reference"] for n in ("mlp", "deep") for e in summary["networks"][n]["initializers"].values()
             if "p_value" in e.get("vs_reference", {})]
    tests += [f for n in ("mlp", "deep") for f in summary["networks"][n]["uniform_vs_normal"].values()]
    raw = [t["p_value"] for t in tests]
    assert [t["p_adjusted"] for t in tests] == pytest.approx(list(stats.false_discovery_control(raw)))
    assert all(t["p_adjusted"] >= t["p_value"] for t in tests)


def test_across_networks_gives_depth_activation_and_confidence_intervals() -> None:
    runs, *_ = two_networks()
    networks = {"mlp": ModelParams(hidden_units=[8, 8]), "deep": ModelParams(hidden_units=[8] * 6, activation="tanh")}
    table = across_networks(runs, networks).set_index(["network", "initializer"])
    he = table.loc[("deep", "he_normal")]
    assert (he.activation, he.depth, he.runs, he.diverged) == ("tanh", 6, 2, 0)
    assert he.final_val_accuracy == pytest.approx(0.88)
    half = stats.t.ppf(0.975, 1) * pd.Series([0.87, 0.89]).std() / math.sqrt(2)
    assert (he.ci95_low, he.ci95_high) == pytest.approx((0.88 - half, 0.88 + half))
    ones = table.loc[("mlp", "ones")]
    assert (ones.runs, ones.diverged, ones.reached_target) == (2, 1, 0)
    text = results_table(two_networks()[2], across_networks(runs, networks), TARGET, "he_normal")
    assert "### Final val accuracy on every network" in text and "### deep" in text and "#### Final accuracy" in text
    assert "0.880 (" in text


def test_results_tables_list_best_first() -> None:
    runs, epochs = tables()
    summary = summarize_study(runs, epochs, ["mlp"], ORDER, "he_normal", INIT)
    text = results_table(summary, across_networks(runs, {"mlp": ModelParams(hidden_units=[8])}), TARGET, "he_normal")
    rows = [line for line in text.split("### Convergence")[0].splitlines() if line.startswith("|")]
    first = rows[2]  # after the header and the separator
    assert "he_normal" in first and "0.9800 ± 0.0141" in first
    assert "| he_uniform" in text and "-0.0100" in text
    assert "epochs to 0.97" in text and "2.5 (2/2)" in text and "never" in text
    assert "### Uniform vs normal" in text and "| he " in text


def test_load_runs_reads_each_run_and_numbers_epochs_from_one(tmp_path: Path) -> None:
    for seed in (0, 1):
        folder = tmp_path / f"mlp-zeros-{seed}"
        folder.mkdir()
        (folder / "metrics.json").write_text(json.dumps({
            "network": "mlp", "initializer": "zeros", "seed": seed, "epochs_completed": 2, "final_accuracy": 0.2,
            "final_loss": 2.2, "final_val_accuracy": 0.1, "final_val_loss": 2.2}))
        (folder / "history.csv").write_text(
            "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.1,2.3,0.1,2.3\n1,0.2,2.2,0.1,2.2\n"
        )
    runs, epochs = load_runs(tmp_path, [("mlp", "zeros", 0), ("mlp", "zeros", 1)])
    assert list(runs.seed) == [0, 1]
    assert list(epochs.epoch) == [1, 2, 1, 2] and list(epochs.seed) == [0, 0, 1, 1]
    assert list(epochs.columns[:4]) == ["network", "initializer", "seed", "epoch"]


def test_a_missing_run_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="mlp-zeros-0/metrics.json is missing: run `dvc repro`"):
        load_runs(tmp_path, [("mlp", "zeros", 0)])


def test_the_spread_per_network_is_best_minus_worst_mean_with_a_bootstrap_interval() -> None:
    runs, _, _ = two_networks()
    spread = initializer_spread(runs, trains_above=0.5)
    mlp, deep = spread["mlp"], spread["deep"]
    assert mlp["spread"] == pytest.approx((0.97 + 0.99) / 2 - 0.1135)  # he_normal's mean − zeros'
    assert (mlp["best"], mlp["worst"], mlp["fail"]) == ("he_normal", "zeros", "zeros, ones")  # ones: 0.5 is not above
    assert deep["best"] == "he_uniform" and deep["spread"] == pytest.approx(0.97 - 0.1135)
    assert "ci95_low" not in mlp  # ones has one run with an accuracy: no interval
    both = runs[runs.initializer.isin(["he_normal", "he_uniform"])]
    interval = initializer_spread(both, trains_above=0.5)["mlp"]
    assert interval["fail"] == "none"
    assert interval["spread"] == pytest.approx(0.01)
    assert 0 <= interval["ci95_low"] <= interval["spread"] <= interval["ci95_high"]
    assert interval == initializer_spread(both, trains_above=0.5)["mlp"]  # a fixed generator: the same bytes
    networks = across_networks(runs, {"mlp": ModelParams(hidden_units=[8]), "deep": ModelParams(hidden_units=[8] * 3)})
    table = results_table(two_networks()[2] | {"initializer_spread": spread}, networks, TARGET, "he_normal")
    assert "### Does the initializer matter? Spread per network" in table
    assert "0.856 | he_uniform | zeros   | zeros, ones |" in table
