"""The schema of params.yaml: one pydantic model per section, each field with its type,
bounds and description (docs/parameters.md is written from them)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)

from initstudy.datasets import DATASETS

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
    name: Dataset = Field(description="the dataset every run trains and is validated on")
    sources: dict[Dataset, list[str]] = Field(description="per dataset, the URLs or folders to fetch its files "
                                              "from, tried in order (INITSTUDY_DATA_MIRROR goes first)")
    checksums: dict[str, Checksum] = Field(description="file name to `sha256:<hex>` or `md5:<hex>`, replacing the "
                                           "published checksum of that file (a dataset of one's own); empty: none")
    train_samples: Count | None = Field(description="train on the first N training images; null: all of them")
    val_samples: Count | None = Field(description="validate on the first N test images; null: all of them")

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
    value: Weight = Field(0.0, description="every weight's value")


class NormalInit(_Init):
    name: Literal["random_normal", "truncated_normal"]
    mean: Weight = Field(0.0, description="the mean of the weights")
    stddev: PositiveWeight = Field(0.05, description="their standard deviation (truncated_normal: before it "
                                                     "redraws those beyond 2 of them)")


class UniformInit(_Init):
    name: Literal["random_uniform"]
    minval: Weight = Field(-0.05, description="the lower end of the range")
    maxval: Weight = Field(0.05, description="the upper end, above minval")

    @model_validator(mode="after")
    def _ordered(self) -> UniformInit:
        if self.minval >= self.maxval:
            raise ValueError(f"minval ({self.minval}) must be below maxval ({self.maxval})")
        return self


class MatrixInit(_Init):
    name: Literal["orthogonal", "identity"]
    gain: PositiveWeight = Field(1.0, description="the factor the matrix is multiplied by")


class VarianceScalingInit(_Init):
    name: Literal["variance_scaling"]
    scale: PositiveReal = Field(1.0, le=MAX_WEIGHT**2, description="σ_w²: the weights' variance times the fan")
    mode: Literal["fan_in", "fan_out", "fan_avg"] = Field("fan_in", description="the fan: inputs, outputs, or mean")
    distribution: Literal["truncated_normal", "untruncated_normal", "uniform"] = Field(
        "truncated_normal", description="the shape of the draw; its variance is scale / fan in every case")


class LSUVInit(_Init):
    """Layer-sequential unit variance: orthogonal start, then each layer rescaled on a data batch."""

    name: Literal["lsuv"]
    tolerance: Real = Field(0.05, gt=0, lt=1, description="a layer is done once its output variance is 1 ± this")
    max_iterations: Count = Field(10, description="the most rescalings per layer")
    batch_size: Count = Field(512, description="training images the variances are measured on")


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
    networks: list[str] = Field(min_length=1, description="labels under `networks`: the architectures of the study")
    initializers: list[str] = Field(min_length=1, description="labels under `initializers`: the schemes compared")
    seeds: list[StrictInt] = Field(min_length=1, description="a run per seed of each network × initializer, 0 to 2³²−1")

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

    family: Literal["mlp", "cnn"] = Field("mlp", description="dense layers only, or convolution blocks first")
    conv_filters: list[Count] = Field([], description="a cnn's blocks: the filters of each 3×3 convolution, "
                                                      "each followed by 2×2 max pooling")
    hidden_units: Annotated[list[Count], BeforeValidator(_stack)] = Field(
        min_length=1, description="units of each hidden dense layer, or `{width: w, depth: d}` for d layers of w")
    activation: Literal["relu", "tanh", "sigmoid", "selu", "elu", "gelu"] = Field(
        "relu", description="the hidden layers' activation")
    dropout: Real = Field(0.0, ge=0, lt=1, description="dropout rate after each hidden layer (and conv block)")
    normalization: Literal["none", "batch", "layer"] = Field("none", description=(
        "batch or layer normalization after each hidden layer's activation (and conv block); in a residual "
        "mlp at the start of each branch and before the logits"))
    residual: StrictBool = Field(False, description=(
        "an mlp whose first hidden layer projects the input linearly, and whose further hidden layers form "
        "blocks h + f(h), f = [normalization] → (activation → Dense) × branch_layers"))
    branch_layers: StrictInt = Field(1, ge=1, le=2, description="Dense layers per residual branch, 1 or 2")
    branch_scale: Real = Field(1.0, ge=0, le=MAX_WEIGHT, description=(
        "the last kernel of each residual branch, as initialized (after LSUV), times this (its bias is left "
        "as drawn): 0 starts each block as the identity where biases start at zero (Fixup's zero init)"))
    bias_initializer: InitSpec = Field("zeros", validate_default=True, description=(
        "how the biases start: an initializer spec as under `initializers`, not a matrix one"))

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

    @model_validator(mode="after")
    def _residual_blocks(self) -> ModelParams:
        if not self.residual:
            extra = sorted({"branch_layers", "branch_scale"} & self.model_fields_set)
            if extra:
                raise ValueError(f"{', '.join(extra)}: only for a residual mlp; set residual: true, or remove them")
            return self
        if self.family != "mlp":
            raise ValueError("residual: residual blocks are dense layers; a cnn has none (set family: mlp)")
        units, branch = self.hidden_units, self.branch_layers
        if len(set(units)) > 1:
            raise ValueError(f"hidden_units: a residual mlp adds each branch to its input, so every hidden layer "
                             f"has the same width; not {units}")
        if len(units) < 1 + branch or (len(units) - 1) % branch:
            raise ValueError(f"hidden_units: a residual mlp has one projection layer, then blocks of branch_layers "
                             f"= {branch}: 1 + a multiple of {branch} hidden layers (at least {1 + branch}); "
                             f"not {len(units)}")
        return self


class TrainParams(_Section):
    backend: Literal["tensorflow", "jax"] = Field(description="the Keras backend of the stages that run Keras")
    # The widest vector instructions the compiled training code may use (numerics.py):
    # AVX gives the same bits on every x86-64 machine; "native" is faster where the CPU
    # has FMA, and its bits depend on the CPU.
    cpu_isa: Literal["SSE4_2", "AVX", "AVX2", "AVX512", "native"] = Field(
        description="the widest vector instructions compiled code may use: AVX gives the same bits on any x86-64")
    optimizer: Literal["adam", "sgd"] = Field(description="the optimizer of every run")
    learning_rate: PositiveReal = Field(description="its learning rate")
    momentum: Real = Field(ge=0, lt=1, description="sgd's momentum (0 for adam)")
    nesterov: StrictBool = Field(description="Nesterov momentum, for sgd")
    batch_size: Count = Field(description="training images per step")
    epochs: Count = Field(description="passes over the training images")

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
    dpi: StrictInt = Field(ge=10, le=1000, description="resolution of the PNG plots")


class DiagnosticsParams(_Section):
    batch_size: Count = Field(description="training images the networks at initialization are measured on (diagnose)")


class ProbeParams(_Section):
    """The per-layer measures taken during training, at the end of each listed epoch (0: at init)."""

    epochs: list[StrictInt] = Field(description="epochs after which each layer's activations and gradients are "
                                                "measured; 0: before training; empty: none")
    batch_size: Count = Field(description="training images each probe measures")

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, epochs: list[int]) -> list[int]:
        if any(e < 0 for e in epochs):
            raise ValueError("epochs are 0 (before training) or the number of an epoch, from 1")
        return _unique(epochs)


class AnalysisParams(_Section):
    target_accuracy: Real = Field(gt=0, le=1, description="the validation accuracy `epochs_to_target` counts up to")
    reference: str = Field(description="the initializer the others are tested against (Welch's t-test); one of "
                                       "study.initializers")
    trains_above: Real = Field(gt=0, lt=1, description="\"trains\" in the phase diagram and the spread per network: "
                                                       "a mean final validation accuracy above this")


class Params(_Section):
    """Every section, each valid on its own; parse_params checks the rules between them."""

    data: DataParams = Field(description="what to train on")
    study: StudyParams = Field(description="what to train: one run per network × initializer × seed")
    initializers: dict[str, InitSpec] = Field(min_length=1, description="the catalogue of initializers, by label")
    networks: dict[str, ModelParams] = Field(min_length=1, description="the catalogue of networks, by label")
    train: TrainParams = Field(description="how every run trains")
    probes: ProbeParams = Field(description="per-layer measures during training")
    diagnostics: DiagnosticsParams = Field(description="per-layer measures at initialization")
    analysis: AnalysisParams = Field(description="the statistics of aggregate")
    plots: PlotParams = Field(description="the PNG plots")

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


SPECS: dict[str, type[_Init]] = {
    name: model for model in get_args(get_args(InitSpec)[0])
    for name in get_args(model.model_fields["name"].annotation)
}
