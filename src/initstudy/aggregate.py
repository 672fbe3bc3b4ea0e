"""Gather every run of a study into statistics, analyses and tables per (network, initializer),
and comparisons across networks."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from initstudy import theory
from initstudy.errors import StudyError
from initstudy.params import InitSpec, ModelParams

SUMMARY_METRICS = ("final_val_accuracy", "best_val_accuracy", "final_val_loss")
RUN_KEYS = ["network", "initializer", "seed"]
EPOCH_COLUMNS = [*RUN_KEYS, "epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
FAMILIES = ("glorot", "he", "lecun", "random")
INIT_MEASURES = ["activation_mean", "activation_std", "inactive_fraction", "gradient_norm"]


def run_name(network: str, initializer: str, seed: int) -> str:
    """The folder of one run under runs/, as DVC's matrix names it (`${key}`)."""
    return f"{network}-{initializer}-{seed}"


def study_runs(networks: list[str], initializers: list[str], seeds: list[int]) -> list[tuple[str, str, int]]:
    """Every (network, initializer, seed) of a study, in the order of DVC's matrix."""
    return [(n, i, s) for n in networks for i in initializers for s in seeds]


def check_run(run: Path) -> None:
    """Refuse a damaged run, naming it and how to rebuild it: a metrics.json or history.csv
    that does not parse, a history cut short, lacking a column, a row or an epoch, or
    disagreeing with metrics.json on the epochs completed or the final values.

    A missing file raises FileNotFoundError, as reading it does.
    """
    measures = ("loss", "accuracy", "val_loss", "val_accuracy")  # metrics.json has each as final_<name>
    metrics_text = (run / "metrics.json").read_text()
    text = (run / "history.csv").read_bytes()

    def damaged(problem: str) -> StudyError:
        return StudyError(
            f"run {run} is damaged: {problem}. Restore it from DVC's cache with `dvc checkout --force {run}`, "
            f"or train it again with `dvc repro --force --single-item train@{run.name}`"
        )

    try:
        metrics = json.loads(metrics_text)
        history = pd.read_csv(run / "history.csv")
    except ValueError as exc:  # a JSON decoding error, or pandas' for an empty or garbled CSV
        raise damaged(f"cannot parse it ({exc})") from None
    if not text.endswith(b"\n"):
        raise damaged("history.csv ends in the middle of a line")
    missing = [column for column in ("epoch", *measures) if column not in history.columns]
    if missing:
        raise damaged(f"history.csv lacks the column(s) {', '.join(missing)}")
    completed = metrics.get("epochs_completed") if isinstance(metrics, dict) else None
    if not completed or len(history) != completed:
        raise damaged(f"history.csv holds {len(history)} epochs, metrics.json says {completed} were completed")
    if history.epoch.tolist() != list(range(completed)):
        raise damaged(f"history.csv's epochs are not numbered 0 to {completed - 1} in order")
    last = history.iloc[-1]
    for name in measures:
        final, logged = metrics.get(f"final_{name}"), float(pd.to_numeric(last[name], errors="coerce"))
        if final is None:
            agree = not math.isfinite(logged)
        else:
            agree = isinstance(final, (int, float)) and math.isclose(final, logged, rel_tol=1e-12)
        if not agree:
            raise damaged(f"its last {name} is {logged} in history.csv but {final} in metrics.json")


def load_runs(runs_dir: Path, runs: list[tuple[str, str, int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each run's metrics (a row per run) and history (a row per run and epoch, 1-based)."""
    metrics, epochs = [], []
    for network, initializer, seed in runs:
        run = runs_dir / run_name(network, initializer, seed)
        try:
            check_run(run)
            metrics.append(json.loads((run / "metrics.json").read_text()))
            history = pd.read_csv(run / "history.csv")
        except FileNotFoundError as exc:
            raise StudyError(f"{exc.filename} is missing: run `dvc repro` to train it") from None
        epochs.append(history.assign(network=network, initializer=initializer, seed=seed, epoch=history.epoch + 1))
    return pd.DataFrame(metrics), pd.concat(epochs, ignore_index=True)[EPOCH_COLUMNS]


def load_tables(runs_dir: Path, runs: list[tuple[str, str, int]], name: str) -> pd.DataFrame:
    """Every run's table `name` (e.g. probes.csv), its run's keys in front; empty if none has one."""
    tables = [pd.read_csv(path).assign(**dict(zip(RUN_KEYS, run)))
              for run in runs if (path := runs_dir / run_name(*run) / name).exists()]
    if not tables:
        return pd.DataFrame(columns=RUN_KEYS)
    table = pd.concat(tables, ignore_index=True)
    return table[RUN_KEYS + [c for c in table if c not in RUN_KEYS]]


def environments(runs_dir: Path, runs: list[tuple[str, str, int]]) -> list[str]:
    """A warning per fact of the runs' environment.json files that differs between runs: runs
    made with other library versions, vector ISAs or BLAS kernels differ in their bits."""
    seen: dict[str, dict[str, list[str]]] = {}
    names = [run_name(*run) for run in runs]
    missing = [name for name in names if not (runs_dir / name / "environment.json").exists()]
    for name in names:
        if name not in missing:
            path = runs_dir / name / "environment.json"
            try:
                environment = json.loads(path.read_text())
                facts = environment.items()
            except (ValueError, AttributeError):
                raise StudyError(f"{path}: not a JSON object of facts; retrain the run with `dvc repro --force "
                                 f"train@{name}`") from None
            for key, value in facts:
                seen.setdefault(key, {}).setdefault(json.dumps(value), []).append(name)
    warnings = [f"{len(missing)} run(s) record no environment.json, e.g. {missing[0]}"] if missing else []
    for key, values in seen.items():
        unset = len(runs) - len(missing) - sum(map(len, values.values()))
        if len(values) > 1 or unset:
            warnings.append(f"the runs were made in different environments: {key} is "
                            + "; ".join(f"{value} in {len(runs_with)} run(s), e.g. {runs_with[0]}"
                                        for value, runs_with in values.items())
                            + (f"; not recorded in {unset} run(s)" if unset else ""))
    return warnings


def headline(summary: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The study at a glance, a file per network for `dvc metrics show` (a row per network)
    and `dvc exp show` (with one network, a column per initializer): each initializer's mean
    final validation accuracy, null if all its runs diverged."""
    return {network: {name: e.get("final_val_accuracy", {}).get("mean") for name, e in entry["initializers"].items()}
            for network, entry in summary["networks"].items()}


def analyze_runs(runs: pd.DataFrame, epochs: pd.DataFrame, target: float) -> pd.DataFrame:
    """Add to each run its convergence, stability and generalization measures.

    epochs_to_target: first epoch whose val accuracy reaches `target` (NaN: never); val_accuracy_auc:
    area under the val-accuracy curve divided by the epochs (the mean over epochs);
    jitter: mean absolute change of val accuracy from one epoch to the next;
    accuracy_gap: final train − val accuracy; loss_gap: final val − train loss.
    """
    rows = []
    for (network, initializer, seed), run in epochs.sort_values("epoch").groupby(RUN_KEYS):
        reached = run.val_accuracy >= target
        last = run.iloc[-1]
        rows.append({
            "network": network,
            "initializer": initializer,
            "seed": seed,
            "epochs_to_target": run.epoch[reached].min(),
            "val_accuracy_auc": run.val_accuracy.mean(),
            "jitter": run.val_accuracy.diff().abs().mean(),
            "accuracy_gap": last.accuracy - last.val_accuracy,
            "loss_gap": last.val_loss - last.loss,
        })
    return runs.merge(pd.DataFrame(rows), on=RUN_KEYS, how="left")


def converged_epochs(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch rows of the runs that did not diverge."""
    return epochs.merge(runs.loc[~runs.diverged.astype(bool), RUN_KEYS], on=RUN_KEYS)


def welch(a: pd.Series, b: pd.Series) -> dict[str, float]:
    """Difference of means and the p-value of Welch's t-test (NaN where undefined)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p_value = stats.ttest_ind(a, b, equal_var=False).pvalue if len(a) > 1 and len(b) > 1 else math.nan
    return {"difference": a.mean() - b.mean(), "p_value": float(p_value)}


def _finite(tree: Any) -> Any:
    """The tree with plain floats and ints, and without NaN or infinite values."""
    if isinstance(tree, dict):
        cleaned = {k: _finite(v) for k, v in tree.items()}
        return {k: v for k, v in cleaned.items() if v is not None and v != {}}
    if isinstance(tree, list):
        return [_finite(v) for v in tree]
    if isinstance(tree, str):
        return tree
    if isinstance(tree, (bool, np.bool_)):
        return bool(tree)
    if isinstance(tree, (int, np.integer)):
        return int(tree)
    value = float(tree)
    return value if math.isfinite(value) else None


def _statistics(values: pd.Series) -> dict[str, float]:
    """Mean, sample std, min, max and the 95% confidence interval of the mean (t distribution)."""
    n, mean, std = len(values), values.mean(), values.std()
    half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "min": values.min(), "max": values.max(),
            "ci95_low": mean - half, "ci95_high": mean + half}


def summarize(
    runs: pd.DataFrame, epochs: pd.DataFrame, initializers: list[str], reference: str,
    init_layers: pd.DataFrame,
) -> dict[str, Any]:
    """Per initializer: statistics over seeds, convergence, stability, generalization,
    Welch's t-test against `reference`, and the network at initialization (per layer,
    the mean over seeds of the diagnose stage's measures); plus uniform vs normal per family.

    `runs` is the output of analyze_runs. Diverged runs are counted but kept out of every
    statistic; an initializer whose runs all diverged has counts only. Undefined values
    (the std of one run, a test without variance) are left out, so the JSON holds no NaN.
    """
    diverged = runs.diverged.astype(bool)
    converged = runs[~diverged]
    per_epoch = converged_epochs(runs, epochs).groupby(["initializer", "epoch"]).val_accuracy.std()
    spread = per_epoch.groupby("initializer").mean()
    final = {name: g.final_val_accuracy for name, g in converged.groupby("initializer")}
    means = pd.Series({name: values.mean() for name, values in final.items()}, dtype=float)
    rank = means.rank(ascending=False, method="min")
    at_init = init_layers.groupby(["initializer", "layer"])[INIT_MEASURES].mean()
    summary: dict[str, Any] = {}
    for name in initializers:
        entry: dict[str, Any] = {
            "runs": int((runs.initializer == name).sum()),
            "diverged": int(diverged[runs.initializer == name].sum()),
        }
        if name in at_init.index:
            entry["init"] = {f"layer_{layer}": row.to_dict() for layer, row in at_init.loc[name].iterrows()}
        group = converged[converged.initializer == name]
        if len(group):
            entry["rank"] = int(rank[name])
            entry |= {metric: _statistics(group[metric]) for metric in SUMMARY_METRICS}
            entry["convergence"] = {
                "epochs_to_target": group.epochs_to_target.mean(),
                "reached_target": int(group.epochs_to_target.notna().sum()),
                "val_accuracy_auc": group.val_accuracy_auc.mean(),
            }
            entry["stability"] = {"epoch_spread": spread.get(name, math.nan), "jitter": group.jitter.mean()}
            entry["generalization"] = {
                "accuracy_gap": group.accuracy_gap.mean(), "loss_gap": group.loss_gap.mean()
            }
            if name != reference and reference in final:
                entry["vs_reference"] = welch(final[name], final[reference])
        summary[name] = entry
    families = {
        family: {"uniform": final[u].mean(), "normal": final[n].mean()} | welch(final[n], final[u])
        for family in FAMILIES
        if (u := f"{family}_uniform") in final and (n := f"{family}_normal") in final
    }
    return {"initializers": _finite(summary), "uniform_vs_normal": _finite(families)}


def _adjust_p_values(summary: dict[str, Any]) -> None:
    """Beside every p-value of the study (each initializer against the reference, each
    uniform/normal pair, in every network), its Benjamini–Hochberg adjusted value: the
    tests are many, and the adjustment keeps the expected share of false discoveries at
    the level one reads the p-values at."""
    tests = [test for network in summary["networks"].values()
             for test in [e["vs_reference"] for e in network["initializers"].values() if "vs_reference" in e]
             + list(network["uniform_vs_normal"].values()) if "p_value" in test]
    if tests:
        adjusted = stats.false_discovery_control([test["p_value"] for test in tests], method="bh")
        for test, p in zip(tests, adjusted):
            test["p_adjusted"] = float(p)


def summarize_study(
    runs: pd.DataFrame, epochs: pd.DataFrame, networks: list[str], initializers: list[str], reference: str,
    init_layers: pd.DataFrame,
) -> dict[str, Any]:
    """summarize() for each network of the study, with Benjamini–Hochberg adjusted p-values."""
    summary = {"networks": {
        network: summarize(runs[runs.network == network], epochs[epochs.network == network], initializers,
                           reference, init_layers[init_layers.network == network])
        for network in networks
    }}
    _adjust_p_values(summary)
    return summary


def across_networks(runs: pd.DataFrame, networks: dict[str, ModelParams]) -> pd.DataFrame:
    """A row per (network, initializer): the network's activation and depth (its hidden Dense
    layers), runs, diverged runs, the final val accuracy's mean and 95% confidence interval,
    the epochs to the target of the runs that reached it, and σ_w² and σ_b² (see variances)."""
    rows = []
    for (network, initializer), group in runs.groupby(["network", "initializer"], sort=False):
        converged = group[~group.diverged.astype(bool)]
        final = _statistics(converged.final_val_accuracy) if len(converged) else {}
        rows.append({
            "network": network, "activation": networks[network].activation,
            "depth": len(networks[network].hidden_units), "initializer": initializer,
            "runs": len(group), "diverged": int(group.diverged.astype(bool).sum()),
            "final_val_accuracy": final.get("mean", math.nan),
            "ci95_low": final.get("ci95_low", math.nan), "ci95_high": final.get("ci95_high", math.nan),
            "epochs_to_target": converged.epochs_to_target.mean(),
            "reached_target": int(converged.epochs_to_target.notna().sum()),
            **{key: group[key].iloc[0] if key in group else math.nan for key in ("weight_variance", "bias_variance")},
        })
    return pd.DataFrame(rows)


def variances(networks: dict[str, ModelParams], initializers: dict[str, InitSpec]) -> pd.DataFrame:
    """A row per (network, initializer): σ_w² and σ_b² of the hidden layers (see theory.py), from
    the catalogue entries; NaN where the network's hidden layers differ in width or the
    initializer's weights or biases are not independent with mean zero."""
    rows = []
    for network, model in networks.items():
        widths = set(model.hidden_units)
        width = widths.pop() if len(widths) == 1 and model.family == "mlp" else None
        for initializer, spec in initializers.items():
            weight = theory.weight_variance(spec, width, width) if width else None
            bias = theory.bias_variance(model.bias_initializer, spec, width) if width else None
            rows.append({"network": network, "initializer": initializer,
                         "weight_variance": math.nan if weight is None else weight,
                         "bias_variance": math.nan if bias is None else bias})
    return pd.DataFrame(rows, columns=["network", "initializer", "weight_variance", "bias_variance"])


def _spread_of_means(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    means = np.stack([np.mean(sample, axis=axis) for sample in samples])
    return means.max(axis=0) - means.min(axis=0)


def initializer_spread(runs: pd.DataFrame, trains_above: float) -> dict[str, Any]:
    """Does the initializer matter on this network? Per network: the spread of the initializers'
    mean final val accuracy over seeds (the best mean minus the worst), its 95% interval (a
    percentile bootstrap over each initializer's seeds, with a fixed generator; it lies above 0
    even where the initializers are alike, so read it against the seeds' own spread), the best
    and worst initializer (ties listed together), and those whose mean does not exceed `trains_above` ("fail", a text, as
    DVC's metrics drop lists). Every run with an accuracy counts, a diverged one at the accuracy
    it ended with."""
    result: dict[str, Any] = {}
    for network, group in runs.dropna(subset=["final_val_accuracy"]).groupby("network", sort=False):
        per_init = {name: g.final_val_accuracy.to_numpy(float) for name, g in group.groupby("initializer", sort=False)}
        means = pd.Series({name: values.mean() for name, values in per_init.items()})
        low = high = math.nan
        if len(per_init) > 1 and all(len(values) > 1 for values in per_init.values()):
            with np.errstate(all="ignore"):
                interval = stats.bootstrap(list(per_init.values()), _spread_of_means, n_resamples=9999,
                                           method="percentile", rng=np.random.default_rng(0)).confidence_interval
            low, high = interval.low, interval.high
        result[network] = {"spread": means.max() - means.min(), "ci95_low": low, "ci95_high": high,
                           "best": ", ".join(means.index[means == means.max()]),
                           "worst": ", ".join(means.index[means == means.min()]),
                           "fail": ", ".join(name for name, mean in means.items() if not mean > trains_above) or "none"}
    return _finite(result)


def phase_diagram(networks: pd.DataFrame, trains_above: float) -> dict[str, Any]:
    """Theory against measurement, per activation whose study varies both depth and σ_w²: each
    (network, initializer) "trains" if its mean final val accuracy is above `trains_above`, and
    is predicted to if its depth is below 6 ξ_c (Schoenholz et al. 2017) at its σ_w² and σ_b².
    Returns, per activation, the share of cells where the two agree and the cells where they don't."""
    defined = networks.dropna(subset=["weight_variance", "bias_variance"])
    result: dict[str, Any] = {}
    for activation, group in defined.groupby("activation", sort=False):
        if group.depth.nunique() < 2 or group.weight_variance.nunique() < 2:
            continue
        cells = []
        for row in group.itertuples():
            scale = theory.depth_scale(activation, row.weight_variance, row.bias_variance)
            trains = bool(row.final_val_accuracy > trains_above)  # NaN (every run diverged): False
            cells.append({"network": row.network, "initializer": row.initializer, "depth": int(row.depth),
                          "weight_variance": row.weight_variance, "bias_variance": row.bias_variance,
                          "final_val_accuracy": row.final_val_accuracy, "depth_scale": scale,
                          "trains": trains, "predicted": bool(row.depth < 6 * scale)})
        agree = [cell for cell in cells if cell["trains"] == cell["predicted"]]
        result[activation] = {"cells": len(cells), "agree": len(agree), "agreement": len(agree) / len(cells),
                              "trains_above": trains_above,
                              "disagree": [cell for cell in cells if cell["trains"] != cell["predicted"]]}
    return _finite(result)


def _phase_table(activation: str, entry: dict[str, Any], networks: pd.DataFrame) -> str:
    """Mean final val accuracy per depth (rows) and σ_w² (columns); * where theory disagrees."""
    group = networks[networks.activation == activation].dropna(subset=["weight_variance", "bias_variance"])
    wrong = {(c["network"], c["initializer"]) for c in entry["disagree"]}
    cells = group.assign(
        sigma=[f"{w:.3g}" + (f" ({r})" if r.startswith("torch") else "") for w, r in zip(group.weight_variance, group.initializer)],
        cell=[_number(r.final_val_accuracy, 3) + ("*" if (r.network, r.initializer) in wrong else "")
              for r in group.itertuples()])
    table = cells.pivot_table(index="depth", columns="sigma", values="cell", aggfunc=" ".join)
    columns = sorted(table.columns, key=lambda c: float(c.split()[0]))
    table = table[columns].rename_axis(index="depth", columns="σ_w²")
    return (f"{entry['agree']} of {entry['cells']} cells agree ({entry['agreement']:.0%}): trains = mean final "
            f"val accuracy above {entry['trains_above']:g}; predicted = depth below 6 ξ_c. * marks a cell "
            f"where they disagree.\n\n" + table.to_markdown() + "\n")


def _mean_std(stats_: dict[str, float], digits: int = 4) -> str:
    if "mean" not in stats_:
        return "–"
    text = f"{stats_['mean']:.{digits}f}"
    return f"{text} ± {stats_['std']:.{digits}f}" if "std" in stats_ else text


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}" if value >= 0.001 else "<0.001"


def _p_pair(test: dict[str, float]) -> str:
    """Raw and Benjamini–Hochberg adjusted p-value."""
    return f"{_p(test.get('p_value'))}, adj. {_p(test.get('p_adjusted'))}"


def _ranking_row(name: str, entry: dict[str, Any], reference: str) -> dict[str, Any]:
    final = entry.get("final_val_accuracy", {})
    versus = entry.get("vs_reference")
    return {
        "rank": entry.get("rank", "–"),
        "initializer": name,
        "final val accuracy": _mean_std(final),
        "95% CI": f"{final['ci95_low']:.4f}–{final['ci95_high']:.4f}" if "ci95_low" in final else "–",
        f"vs {reference} (p, BH-adjusted p)": f"{versus['difference']:+.4f} ({_p_pair(versus)})" if versus else "–",
        "best val accuracy": _mean_std(entry.get("best_val_accuracy", {})),
        "final val loss": _mean_std(entry.get("final_val_loss", {})),
        "runs": entry["runs"],
        "diverged": entry["diverged"],
    }


def _dynamics_row(name: str, entry: dict[str, Any], target: float) -> dict[str, Any]:
    convergence = entry.get("convergence", {})
    stability = entry.get("stability", {})
    gap = entry.get("generalization", {})
    epochs = convergence.get("epochs_to_target")
    return {
        "initializer": name,
        f"epochs to {target:g}": "never" if epochs is None else
        f"{epochs:.1f} ({convergence['reached_target']}/{entry['runs']})",
        "val acc AUC": _number(convergence.get("val_accuracy_auc")),
        "epoch spread": _number(stability.get("epoch_spread")),
        "jitter": _number(stability.get("jitter")),
        "accuracy gap": _number(gap.get("accuracy_gap")),
        "loss gap": _number(gap.get("loss_gap")),
    }


def _network_tables(summary: dict[str, Any], target: float, reference: str, level: str) -> str:
    """One network's summary as markdown tables, best initializer first."""
    entries = sorted(summary["initializers"].items(), key=lambda kv: kv[1].get("rank", math.inf))
    ranking = pd.DataFrame([_ranking_row(name, e, reference) for name, e in entries])
    dynamics = pd.DataFrame([_dynamics_row(name, e, target) for name, e in entries])
    families = pd.DataFrame([
        {"family": family, "uniform": _number(f["uniform"]), "normal": _number(f["normal"]),
         "normal − uniform": f"{f['difference']:+.4f}", "p (Welch), BH-adjusted": _p_pair(f)}
        for family, f in summary["uniform_vs_normal"].items()
    ])
    parts = [
        f"{level} Final accuracy\n", ranking.to_markdown(index=False),
        f"\n\n{level} Convergence, stability, generalization (target val accuracy {target:g})\n",
        dynamics.to_markdown(index=False),
    ]
    if len(families):
        parts += [f"\n\n{level} Uniform vs normal (final val accuracy)\n", families.to_markdown(index=False)]
    return "".join(parts) + "\n"


def _depth_table(table: pd.DataFrame) -> str:
    """Final val accuracy (95% CI) per initializer (rows) and network (columns, by activation and depth)."""
    cells = table.assign(cell=[
        "diverged" if math.isnan(r.final_val_accuracy) else
        f"{r.final_val_accuracy:.3f}" + ("" if math.isnan(r.ci95_low) else f" ({r.ci95_low:.3f}–{r.ci95_high:.3f})")
        + (f", {r.diverged} diverged" if r.diverged else "")
        for r in table.itertuples()])
    order = table.sort_values(["activation", "depth"], kind="stable").network.unique()
    return cells.pivot(index="initializer", columns="network", values="cell")[order].to_markdown()


def _spread_table(spread: dict[str, Any]) -> str:
    """The initializer_spread of every network, as markdown."""
    rows = [{"network": network, "spread of the mean final val accuracy (95% CI)":
             f"{e['spread']:.3f}" + (f" ({e['ci95_low']:.3f}–{e['ci95_high']:.3f})" if "ci95_low" in e else ""),
             "best": e["best"], "worst": e["worst"], "fail": e["fail"]}
            for network, e in spread.items()]
    return ("Best minus worst initializer's mean over seeds; the interval is a percentile bootstrap over each "
            "initializer's seeds. Fail: a mean final val accuracy not above analysis.trains_above.\n\n"
            + pd.DataFrame(rows).to_markdown(index=False) + "\n")


def results_table(summary: dict[str, Any], networks: pd.DataFrame, target: float, reference: str) -> str:
    """The summary as markdown: per network the ranking and analyses; with several networks,
    first the phase diagrams if any, then the final accuracy of every initializer on every
    network. p-values are Welch's, adjusted by Benjamini–Hochberg over all the tests of the study."""
    per_network = summary["networks"]
    if len(per_network) == 1:
        return _network_tables(next(iter(per_network.values())), target, reference, "###")
    parts = [f"### Phase diagram, {activation}: theory against measurement\n\n{_phase_table(activation, entry, networks)}\n"
             for activation, entry in summary.get("phase_diagram", {}).items()]
    if "initializer_spread" in summary:
        parts += ["### Does the initializer matter? Spread per network\n\n", _spread_table(summary["initializer_spread"]),
                  "\n"]
    parts += ["### Final val accuracy on every network (mean over seeds, 95% CI)\n", _depth_table(networks), "\n"]
    for network, entry in per_network.items():
        parts += [f"\n### {network}\n\n", _network_tables(entry, target, reference, "####")]
    return "".join(parts)
