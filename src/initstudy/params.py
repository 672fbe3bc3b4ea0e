"""The study's parameters: one schema, checked before any download or training."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from initstudy.errors import StudyError

Initializer = Literal[
    "zeros",
    "ones",
    "orthogonal",
    "identity",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_uniform",
    "lecun_normal",
]
INITIALIZERS: tuple[str, ...] = get_args(Initializer)


class ParamsError(StudyError):
    """params.yaml does not fit the schema; the message names every bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Section):
    name: Literal["mnist"]
    sources: list[str] = Field(min_length=1)
    train_samples: StrictInt | None = Field(gt=0)
    val_samples: StrictInt | None = Field(gt=0)


def _unique(values: list[Any]) -> list[Any]:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"values must be unique; repeated: {', '.join(repeated)}")
    return values


class StudyParams(_Section):
    initializers: list[Initializer] = Field(min_length=1)
    seeds: list[StrictInt] = Field(min_length=1)

    _unique_initializers = field_validator("initializers")(_unique)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be non-negative integers")
        return _unique(seeds)


class ModelParams(_Section):
    hidden_units: list[StrictInt] = Field(min_length=1)
    activation: Literal["relu", "tanh", "sigmoid", "selu", "elu", "gelu"]
    dropout: float = Field(ge=0, lt=1)
    bias_initializer: Literal["zeros", "ones", "random_normal", "random_uniform"]

    @field_validator("hidden_units")
    @classmethod
    def _positive_units(cls, units: list[int]) -> list[int]:
        if any(u <= 0 for u in units):
            raise ValueError("hidden layer sizes must be positive integers")
        return units


class TrainParams(_Section):
    backend: Literal["tensorflow", "jax"]
    optimizer: Literal["adam", "sgd"]
    learning_rate: PositiveFloat
    batch_size: StrictInt = Field(gt=0)
    epochs: StrictInt = Field(gt=0)


class PlotParams(_Section):
    dpi: StrictInt = Field(gt=0)


class DiagnosticsParams(_Section):
    batch_size: StrictInt = Field(gt=0)


class AnalysisParams(_Section):
    target_accuracy: float = Field(gt=0, le=1)
    reference: Initializer


class Params(_Section):
    data: DataParams
    study: StudyParams
    model: ModelParams
    train: TrainParams
    diagnostics: DiagnosticsParams
    analysis: AnalysisParams
    plots: PlotParams

    @model_validator(mode="after")
    def _reference_is_studied(self) -> Params:
        if self.analysis.reference not in self.study.initializers:
            raise ValueError(
                f"analysis.reference = {self.analysis.reference!r} is not one of "
                f"study.initializers ({', '.join(self.study.initializers)})"
            )
        return self


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else part
    return key


def _section_fields(loc: tuple[int | str, ...]) -> list[str]:
    """Names of the keys allowed next to the key at `loc`."""
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _hint(value: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(value), choices, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _describe(error: dict[str, Any]) -> str:
    """One line for one schema violation: the key, the bad value, what is allowed."""
    loc = error["loc"]
    key = _key(loc)
    if error["type"] == "missing":
        return f"{key}: missing required key"
    if error["type"] == "extra_forbidden":
        allowed = _section_fields(loc)
        return (
            f"{key}: unknown key; allowed here: {', '.join(allowed)}."
            + _hint(loc[-1], allowed)
        )
    message = error["msg"].removeprefix("Value error, ")
    if not loc:  # a rule across sections: its message names the keys
        return message
    line = f"{key} = {error['input']!r}: {message}"
    if error["type"] == "literal_error":
        line += "." + _hint(error["input"], re.findall(r"'([^']*)'", error["ctx"]["expected"]))
    return line


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a params mapping; raise ParamsError listing every problem."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors(include_url=False)]
        raise ParamsError(f"invalid {source}:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"cannot read {path}: {exc}") from None
    return parse_params(raw, str(path))
