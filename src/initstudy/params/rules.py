"""The rules between keys of different sections, and the warnings of small samples."""

from __future__ import annotations

from typing import Any

from initstudy.datasets import DATASETS
from initstudy.params.messages import hint
from initstudy.params.schema import FEW_IMAGES, LSUVInit, Params

# The most training runs (stages) a study may have. DVC's cost grows with the stages before
# any of them runs: with 1,000 on a 2-core machine `dvc stage list` took 6 s, `dvc status`
# 14 s, and `dvc repro` 0.2 s per target it is given (63 s for 300), each growing with the
# study's size; with 5,000, `make study` started no run in 10 minutes (docs/scaling.md).
MAX_RUNS = 1000


def cross_key_problems(sections: dict[str, Any], labels: dict[str, list[str]], sizes: bool) -> list[str]:
    """Every problem between keys of different sections, among the `sections` that are valid
    on their own (a rule whose sections are not all valid is skipped): so that they are
    reported in the same pass as the problems of single keys. `labels` holds the labels of
    each catalogue written as a mapping, valid or not; `sizes` adds the counts of images.
    """
    problems = []
    study = sections.get("study")
    if study:
        analysis = sections.get("analysis")
        for section, chosen, extra in (
                ("initializers", study.initializers, [("analysis.reference", analysis.reference)] if analysis else []),
                ("networks", study.networks, [])):
            known = labels.get(section)
            if known is None:
                continue
            problems += [f"{key} = {label!r}: not a label under {section} ({', '.join(known)}).{hint(label, known)}"
                         for key, label in extra + [(f"study.{section}[{i}]", label) for i, label in enumerate(chosen)]
                         if label not in known]
        runs = len(study.networks) * len(study.initializers) * len(study.seeds)
        if runs > MAX_RUNS:
            problems.append(f"study: {runs:,} runs ({len(study.networks)} network(s) × {len(study.initializers)} "
                            f"initializer(s) × {len(study.seeds)} seed(s)); at most {MAX_RUNS:,}: DVC's bookkeeping "
                            "grows faster than the runs, and with 5,000 no run starts for minutes. Split it into "
                            "studies of fewer seeds or networks (docs/scaling.md, \"How big a study\")")
        if analysis and analysis.reference in labels.get("initializers", []) and \
                analysis.reference not in study.initializers:
            problems.append(f"analysis.reference = {analysis.reference!r} is not one of "
                            f"study.initializers ({', '.join(study.initializers)})")
    if {"data", "study", "networks", "initializers"} <= sections.keys():
        size = sections["data"].name
        for label in study.networks:
            network = sections["networks"].get(label)
            if network is None or network.family != "cnn":
                continue
            pixels = DATASETS[size].image_size
            if 2 ** len(network.conv_filters) > pixels:
                problems.append(
                    f"networks.{label}.conv_filters = {network.conv_filters}: each block halves the image, "
                    f"and {size}'s {pixels}×{pixels} images allow at most {pixels.bit_length() - 1} blocks")
            identity = [init for init in study.initializers
                        if init in sections["initializers"] and sections["initializers"][init].name == "identity"]
            if identity:
                problems.append(f"study.initializers: {', '.join(identity)} (identity) needs 2-D kernels; "
                                f"networks.{label} is a cnn, whose conv kernels are 4-D")
    if {"probes", "train"} <= sections.keys():
        beyond = [e for e in sections["probes"].epochs if e > sections["train"].epochs]
        if beyond:
            problems.append(f"probes.epochs: {', '.join(map(str, beyond))} beyond train.epochs "
                            f"({sections['train'].epochs})")
    if sizes and "data" in sections:
        problems += _too_many_images(sections)
    return problems


def _too_many_images(sections: dict[str, Any]) -> list[str]:
    """Asking for more images than there are: more samples than the dataset has, a batch
    larger than the training images.

    The dataset's sizes are the published ones; for a dataset whose checksums data.checksums
    replaces (a mirror of one's own) they are unknown here, and load_split refuses samples
    its files do not hold.
    """
    data, dataset = sections["data"], DATASETS[sections["data"].name]
    published = not data.checksums
    problems = []
    if published:
        for key, asked, has, part in (("train_samples", data.train_samples, dataset.train_images, "training"),
                                      ("val_samples", data.val_samples, dataset.val_images, "validation")):
            if asked is not None and asked > has:
                problems.append(f"data.{key} = {asked}: {data.name} has {has:,} {part} images")
    train = data.train_samples or (dataset.train_images if published else None)
    if train is None:
        return problems
    batches = {f"{name}.batch_size": sections[name].batch_size for name in ("train", "diagnostics", "probes")
               if name in sections and (name != "probes" or sections[name].epochs)}
    of = "data.train_samples" if data.train_samples else data.name
    return problems + [f"{key} = {size}: more than the {train:,} training images ({of})"
                       for key, size in (batches | _lsuv_batches(sections)).items() if size > train]


def _lsuv_batches(sections: dict[str, Any]) -> dict[str, int]:
    """The batch size of each LSUV initializer of the study, by its key."""
    if not {"study", "initializers"} <= sections.keys():
        return {}
    catalogue = sections["initializers"]
    return {f"initializers.{label}.batch_size": catalogue[label].batch_size
            for label in sections["study"].initializers if isinstance(catalogue.get(label), LSUVInit)}


def small_sample_warnings(params: Params) -> list[str]:
    """Warnings for image counts that are legal but too small for the statistics they feed."""
    data, dataset = params.data, DATASETS[params.data.name]
    validation = data.val_samples or (None if data.checksums else dataset.val_images)
    measured = {"diagnostics.batch_size": (params.diagnostics.batch_size, "the networks at initialization are measured")}
    measured |= {key: (size, "LSUV scales each layer") for key, size in _lsuv_batches(dict(params)).items()}
    if validation is not None:
        measured["data.val_samples"] = (validation, "validation accuracy is measured")
    return [f"{key} = {size}: {what} on fewer than {FEW_IMAGES} images, too few to compare initializers"
            for key, (size, what) in measured.items() if size < FEW_IMAGES]
