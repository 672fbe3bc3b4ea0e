"""The study's parameters: one schema (schema.py), checked before any download or training;
the rules between sections (rules.py) and the messages (messages.py) beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from initstudy.errors import StudyError
from initstudy.params.messages import describe, section_rules_behind
from initstudy.params.rules import cross_key_problems, small_sample_warnings
from initstudy.params.schema import (
    SECTIONS,
    SPECS,
    ConstantInit,
    InitSpec,
    LSUVInit,
    ModelParams,
    NormalInit,
    Params,
    ProbeParams,
    TorchDefaultInit,
    TrainParams,
    UniformInit,
    VarianceScalingInit,
    init_spec,
)

__all__ = ["SPECS", "ConstantInit", "InitSpec", "LSUVInit", "ModelParams", "NormalInit", "Params", "ParamsError",
           "ProbeParams", "TorchDefaultInit", "TrainParams", "UniformInit", "VarianceScalingInit", "init_spec",
           "load_params", "parse_params", "small_sample_warnings"]


class ParamsError(StudyError):
    """params.yaml does not fit the schema; the message names every bad key."""


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, noting each key given twice in one mapping (YAML keeps the last
    one silently; DVC refuses the file)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.repeated: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[str, int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            if key.value in first:
                self.repeated.append(f"line {line}: {key.value!r} is given again (first on line {first[key.value]}); "
                                     "YAML would keep only the last one: merge them into one")
            else:
                first[key.value] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> tuple[Any, list[str]]:
    """The YAML document in `path`, and a line for each key it gives twice; a ParamsError if
    it is not UTF-8 text."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ParamsError(f"{path} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} is not a "
                          "character; save the file as UTF-8") from None
    loader = _Loader(text)
    try:
        return loader.get_single_data(), loader.repeated
    finally:
        loader.dispose()


def parse_params(raw: Any, source: str = "params.yaml", sizes: bool = False, problems: list[str] | None = None
                 ) -> Params:
    """Validate a params mapping; raise ParamsError listing every problem (after `problems`,
    those found reading the file): those of single keys, the rules between the keys of a
    section (also where one of its keys is bad) and those between keys of different
    sections, in one pass; with `sizes`, also any count of images beyond what the dataset
    holds (check_params' rule: a stage run by hand on few images may ask for a larger batch
    elsewhere)."""
    lines = list(problems or [])
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        params = None
        lines += [describe(e) for e in errors] + section_rules_behind(raw, errors)
    if isinstance(raw, dict):
        labels = {name: [str(label) for label in raw[name]] for name in ("initializers", "networks")
                  if isinstance(raw.get(name), dict)}
        lines += cross_key_problems(dict(params) if params else _valid_sections(raw), labels, sizes)
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


def load_params(path: str | Path = "params.yaml", sizes: bool = False) -> Params:
    """Read and validate params.yaml (`sizes`: as parse_params)."""
    path = Path(path)
    restore = f"run from the project's root, or restore it with `git checkout {path}`"
    try:
        raw, repeated = read_yaml(path)
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
    return parse_params(raw, str(path), sizes, repeated)
