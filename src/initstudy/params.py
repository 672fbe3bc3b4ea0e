"""The study's parameters: one schema, checked before any download or training."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from initstudy.datasets import DATASETS
from initstudy.errors import StudyError

WITHOUT_ARGUMENTS: tuple[str, ...] = (  # Keras initializers that take no argument but a seed
    "zeros",
    "ones",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_uniform",
    "lecun_normal",
)
LABEL = re.compile(r"[A-Za-z0-9_]+")
SEED_LIMIT = 2**32  # keras.utils.set_random_seed seeds NumPy, which takes 0 <= seed < 2**32
# The largest count (epochs, units, batch, samples): far beyond anything that could run, and
# within every backend's integers (a batch size past 64 bits fails in TensorFlow with a bare
# OverflowError).
MAX_COUNT = 2**31 - 1
# Initial weights beyond ±1e4 have no use in a study whose most extreme initializer is
# `ones`; from about 1.3e5 on, float32 cannot even bin a constant kernel's histogram.
MAX_WEIGHT = 1e4
# Deeper than this, a network compiles for minutes and vanishes under any initializer.
MAX_DEPTH = 1000
# Fewer images than this make a statistic too coarse to compare initializers: an accuracy
# then moves in steps of more than 0.01, while the default study's initializers differ by less.
FEW_IMAGES = 100
SECTIONS = ("data", "study", "initializers", "networks", "train", "probes", "diagnostics", "analysis", "plots")


class ParamsError(StudyError):
    """params.yaml does not fit the schema; the message names every bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):  # YAML's true/false would otherwise pass as 1.0/0.0
        raise ValueError("Input should be a number, not true or false")
    return value


Real = Annotated[float, BeforeValidator(_not_a_bool), Field(allow_inf_nan=False)]
PositiveReal = Annotated[Real, Field(gt=0)]
Weight = Annotated[Real, Field(ge=-MAX_WEIGHT, le=MAX_WEIGHT)]
PositiveWeight = Annotated[Real, Field(gt=0, le=MAX_WEIGHT)]
Count = Annotated[StrictInt, Field(gt=0, le=MAX_COUNT)]
Dataset = Literal[tuple(DATASETS)]  # type: ignore[valid-type]
Checksum = Annotated[str, StringConstraints(pattern=r"^(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32})$")]


class DataParams(_Section):
    name: Dataset
    sources: dict[Dataset, list[str]]
    checksums: dict[str, Checksum]
    train_samples: Count | None
    val_samples: Count | None

    @model_validator(mode="after")
    def _sources_and_checksums_for_the_dataset(self) -> DataParams:
        if not self.sources.get(self.name):
            raise ValueError(f"data.sources.{self.name}: no source listed for the dataset in data.name")
        files = DATASETS[self.name].files
        unknown = sorted(set(self.checksums) - set(files))
        if unknown:
            raise ValueError(
                f"data.checksums: {', '.join(unknown)} is not a file of {self.name} ({', '.join(files)})"
            )
        return self


class _Init(_Section):
    """An initializer spec: `name` picks the Keras initializer, the other keys are its arguments."""

    def arguments(self) -> dict[str, Any]:
        return self.model_dump(exclude={"name"})


class PlainInit(_Init):
    name: Literal[WITHOUT_ARGUMENTS]  # type: ignore[valid-type]


class ConstantInit(_Init):
    name: Literal["constant"]
    value: Weight = 0.0


class NormalInit(_Init):
    name: Literal["random_normal", "truncated_normal"]
    mean: Weight = 0.0
    stddev: PositiveWeight = 0.05


class UniformInit(_Init):
    name: Literal["random_uniform"]
    minval: Weight = -0.05
    maxval: Weight = 0.05

    @model_validator(mode="after")
    def _ordered(self) -> UniformInit:
        if self.minval >= self.maxval:
            raise ValueError(f"minval ({self.minval}) must be below maxval ({self.maxval})")
        return self


class MatrixInit(_Init):
    name: Literal["orthogonal", "identity"]
    gain: PositiveWeight = 1.0


class VarianceScalingInit(_Init):
    name: Literal["variance_scaling"]
    scale: PositiveReal = Field(1.0, le=MAX_WEIGHT**2)  # the weights' variance times the fan
    mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in"
    distribution: Literal["truncated_normal", "untruncated_normal", "uniform"] = "truncated_normal"


class LSUVInit(_Init):
    """Layer-sequential unit variance: orthogonal start, then each layer rescaled on a data batch."""

    name: Literal["lsuv"]
    tolerance: Real = Field(0.05, gt=0, lt=1)
    max_iterations: Count = 10
    batch_size: Count = 512


class TorchDefaultInit(_Init):
    """PyTorch's default for nn.Linear and nn.Conv2d: kernels by kaiming_uniform_(a=√5), which
    is U(±1/√fan_in), and biases U(±1/√fan_in) in place of the network's bias_initializer."""

    name: Literal["torch_default"]


InitSpec = Annotated[
    PlainInit | ConstantInit | NormalInit | UniformInit | MatrixInit | VarianceScalingInit | LSUVInit
    | TorchDefaultInit,
    Field(discriminator="name"),
]
NEEDS_A_MATRIX = ("orthogonal", "identity", "lsuv")


def _named(value: Any, default: str) -> Any:
    """A bare name stands for that initializer with its default arguments."""
    if value is None:
        return {"name": default}
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, dict) and "name" not in value:
        return {"name": default, **value}
    return value


def init_spec(value: str | dict[str, Any]) -> InitSpec:
    """A validated initializer spec from a name or a mapping, as params.yaml writes it."""
    default = value if isinstance(value, str) else ""
    return TypeAdapter(InitSpec).validate_python(_named(value, default))


def _unique(values: list[Any]) -> list[Any]:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"values must be unique; repeated: {', '.join(repeated)}")
    return values


class StudyParams(_Section):
    networks: list[str] = Field(min_length=1)
    initializers: list[str] = Field(min_length=1)
    seeds: list[StrictInt] = Field(min_length=1)

    _unique_labels = field_validator("networks", "initializers")(_unique)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        bad = [s for s in seeds if not 0 <= s < SEED_LIMIT]
        if bad:
            raise ValueError(
                f"seeds must be integers from 0 to 2**32 - 1, the seeds NumPy and Keras take; "
                f"not {', '.join(map(str, bad))}"
            )
        return _unique(seeds)


def _stack(value: Any) -> Any:
    """`{width: w, depth: d}` stands for d hidden layers of w units."""
    if not isinstance(value, dict):
        return value
    if set(value) != {"width", "depth"}:
        raise ValueError(f"a list of layer sizes, or {{width: <units>, depth: <layers>}}; not {value}")
    width, depth = TypeAdapter(Count).validate_python(value["width"]), value["depth"]
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth = {depth!r}: a whole number of hidden layers from 1 to {MAX_DEPTH}")
    return [width] * depth


class ModelParams(_Section):
    """One network of the catalogue: a complete architecture."""

    family: Literal["mlp", "cnn"] = "mlp"
    conv_filters: list[Count] = []
    hidden_units: Annotated[list[Count], BeforeValidator(_stack)] = Field(min_length=1)
    activation: Literal["relu", "tanh", "sigmoid", "selu", "elu", "gelu"] = "relu"
    dropout: Real = Field(0.0, ge=0, lt=1)
    batch_norm: StrictBool = False
    bias_initializer: InitSpec = Field("zeros", validate_default=True)

    @field_validator("bias_initializer", mode="before")
    @classmethod
    def _bias_name(cls, value: Any) -> Any:
        return _named(value, "zeros")

    @field_validator("bias_initializer")
    @classmethod
    def _bias_is_elementwise(cls, spec: _Init) -> _Init:
        if spec.name in NEEDS_A_MATRIX:
            raise ValueError(f"{spec.name} needs a matrix; a bias is a vector")
        if spec.name == "torch_default":
            raise ValueError("torch_default draws a layer's biases from its kernel's fan-in; name it as an "
                             "initializer, and it sets the biases too")
        return spec

    @model_validator(mode="after")
    def _convolutions_make_a_cnn(self) -> ModelParams:
        if self.family == "cnn" and not self.conv_filters:
            raise ValueError("conv_filters: a cnn needs at least one convolution block")
        if self.family == "mlp" and self.conv_filters:
            raise ValueError("conv_filters: an mlp has no convolutions; set family: cnn, or remove conv_filters")
        return self


class TrainParams(_Section):
    backend: Literal["tensorflow", "jax"]
    # The widest vector instructions the compiled training code may use (numerics.py):
    # AVX gives the same bits on every x86-64 machine; "native" is faster where the CPU
    # has FMA, and its bits depend on the CPU.
    cpu_isa: Literal["SSE4_2", "AVX", "AVX2", "AVX512", "native"]
    optimizer: Literal["adam", "sgd"]
    learning_rate: PositiveReal
    momentum: Real = Field(ge=0, lt=1)
    nesterov: StrictBool
    batch_size: Count
    epochs: Count

    @model_validator(mode="after")
    def _momentum_is_sgd(self) -> TrainParams:
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):
            raise ValueError(
                f"train.momentum and train.nesterov apply to sgd only; "
                f"set them to 0 and false for {self.optimizer}"
            )
        return self


class PlotParams(_Section):
    # FreeType cannot size the plots' smallest text below about 6 dpi; matplotlib refuses
    # images over 65,536 pixels a side, and at 1000 dpi the widest plot (17 inches) is 17,000.
    dpi: StrictInt = Field(ge=10, le=1000)


class DiagnosticsParams(_Section):
    batch_size: Count


class ProbeParams(_Section):
    """The per-layer measures taken during training, at the end of each listed epoch (0: at init)."""

    epochs: list[StrictInt]
    batch_size: Count

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, epochs: list[int]) -> list[int]:
        if any(e < 0 for e in epochs):
            raise ValueError("epochs are 0 (before training) or the number of an epoch, from 1")
        return _unique(epochs)


class AnalysisParams(_Section):
    target_accuracy: Real = Field(gt=0, le=1)
    reference: str
    trains_above: Real = Field(gt=0, lt=1)  # the phase diagram's "trains": mean final val accuracy above this


class Params(_Section):
    """Every section, each valid on its own; parse_params checks the rules between them."""

    data: DataParams
    study: StudyParams
    initializers: dict[str, InitSpec] = Field(min_length=1)
    networks: dict[str, ModelParams] = Field(min_length=1)
    train: TrainParams
    probes: ProbeParams
    diagnostics: DiagnosticsParams
    analysis: AnalysisParams
    plots: PlotParams

    @field_validator("initializers", "networks", mode="before")
    @classmethod
    def _labels(cls, catalogue: Any) -> Any:
        if not isinstance(catalogue, dict):
            return catalogue
        bad = [str(label) for label in catalogue if not LABEL.fullmatch(str(label))]
        if bad:
            raise ValueError(
                f"labels may hold only letters, digits and '_' (they name stages, "
                f"folders and params keys): {', '.join(bad)}"
            )
        return catalogue

    @field_validator("initializers", mode="before")
    @classmethod
    def _initializer_names(cls, catalogue: Any) -> Any:
        if not isinstance(catalogue, dict):
            return catalogue
        return {label: _named(spec, label) for label, spec in catalogue.items()}


def _cross_key_problems(sections: dict[str, Any], labels: dict[str, list[str]]) -> list[str]:
    """Every problem between keys of different sections, among the `sections` that are valid
    on their own (a rule whose sections are not all valid is skipped): so that they are
    reported in the same pass as the problems of single keys. `labels` holds the labels of
    each catalogue written as a mapping, valid or not.
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
            problems += [f"{key} = {label!r}: not a label under {section} ({', '.join(known)}).{_hint(label, known)}"
                         for key, label in extra + [(f"study.{section}[{i}]", label) for i, label in enumerate(chosen)]
                         if label not in known]
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
    if "data" in sections:
        problems += _too_many_images(sections)
    return problems


SPECS: dict[str, type[_Init]] = {
    name: model for model in get_args(get_args(InitSpec)[0])
    for name in get_args(model.model_fields["name"].annotation)
}


def _walk(loc: tuple[int | str, ...]) -> tuple[str, list[str]]:
    """The dotted key of an error's location, and the keys allowed beside its last part.

    The location pydantic gives holds the tag of an initializer spec (its `name`) as a
    part of its own; it is dropped from the key, and the spec's own keys are the allowed ones.
    """
    key, allowed = "", list(Params.model_fields)
    node: Any = Params
    for part in loc:
        if node is InitSpec or get_origin(node) is Annotated:
            node = SPECS.get(str(part), Any)
            continue
        if isinstance(node, type) and issubclass(node, BaseModel):
            allowed = list(node.model_fields)
            node = node.model_fields[str(part)].annotation if part in allowed else Any
        elif get_origin(node) in (dict, list):
            allowed, node = [], get_args(node)[-1]
        else:
            allowed, node = [], Any
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key, allowed


def _hint(value: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _describe(error: dict[str, Any]) -> str:
    """One line for one schema violation: the key, the bad value, what is allowed."""
    loc = error["loc"]
    key, allowed = _walk(loc)
    if error["type"] == "missing":
        return f"{key}: missing required key"
    if error["type"] == "extra_forbidden":
        return (
            f"{key}: unknown key; allowed here: {', '.join(allowed)}."
            + _hint(loc[-1], allowed)
        )
    if error["type"] == "union_tag_invalid":
        names = list(SPECS)
        return (
            f"{key}.name = {error['ctx']['tag']!r}: unknown initializer; allowed: "
            f"{', '.join(names)}.{_hint(error['ctx']['tag'], names)}"
        )
    message = error["msg"].removeprefix("Value error, ")
    if not loc:  # a rule across sections: its message names the keys
        return message
    if isinstance(error["input"], dict):  # a rule across the keys of a section
        return message if message.startswith(f"{key}.") else f"{key}: {message}"
    line = f"{key} = {error['input']!r}: {message}"
    if error["type"] == "literal_error":
        line += "." + _hint(error["input"], re.findall(r"'([^']*)'", error["ctx"]["expected"]))
    return line


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise ParamsError listing every problem: those of single
    keys and those between keys of different sections, in one pass."""
    try:
        params = Params.model_validate(raw)
        lines = []
    except ValidationError as exc:
        params, lines = None, [_describe(e) for e in exc.errors(include_url=False)]
    if isinstance(raw, dict):
        labels = {name: [str(label) for label in raw[name]] for name in ("initializers", "networks")
                  if isinstance(raw.get(name), dict)}
        lines += _cross_key_problems(dict(params) if params else _valid_sections(raw), labels)
    if lines:
        raise ParamsError(f"invalid {source}:\n  " + "\n  ".join(lines))
    return params


def _valid_sections(raw: dict[str, Any]) -> dict[str, Any]:
    """The sections of `raw` that are valid on their own, validated (a catalogue: as a whole)."""
    partial, sections = Params.model_construct(), {}
    for name in Params.model_fields:
        try:
            Params.__pydantic_validator__.validate_assignment(partial, name, raw[name])
            sections[name] = getattr(partial, name)
        except (KeyError, ValidationError):
            continue
    return sections


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    restore = f"run from the project's root, or restore it with `git checkout {path}`"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} does not exist in {Path.cwd()}: {restore}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"cannot read {path}: {exc}") from None
    if raw is None:
        raise ParamsError(f"{path} is empty; it needs the sections {', '.join(SECTIONS)}: {restore}")
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{path} holds a {type(raw).__name__}, not the sections {', '.join(SECTIONS)}: {restore}"
        )
    return parse_params(raw, str(path))


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
