"""One line per schema violation: the dotted key, the bad value, what is allowed."""

from __future__ import annotations

import difflib
import math
import re
from collections import defaultdict
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

from initstudy.params.schema import SPECS, InitSpec, ModelParams, Params


def _walk(loc: tuple[int | str, ...]) -> tuple[str, list[str], str]:
    """The dotted key of an error's location, the keys allowed beside its last part, and the
    description of that part in the schema ("" where it has none).

    The location pydantic gives holds the tag of an initializer spec (its `name`) as a
    part of its own; it is dropped from the key, and the spec's own keys are the allowed ones.
    """
    key, allowed, description = "", list(Params.model_fields), ""
    node: Any = Params
    for part in loc:
        if node is InitSpec or get_origin(node) is Annotated:
            node = SPECS.get(str(part), Any)
            continue
        description = ""
        if isinstance(node, type) and issubclass(node, BaseModel):
            allowed = list(node.model_fields)
            field = node.model_fields.get(str(part))
            node, description = (field.annotation, field.description or "") if field else (Any, "")
        elif get_origin(node) in (dict, list):
            allowed, node = [], get_args(node)[-1]
        else:
            allowed, node = [], Any
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key, allowed, description


def hint(value: Any, choices: list[str]) -> str:
    """A suggestion among `choices`: those of which `value` is a word ('normal': 'truncated_normal'),
    else the closest spelling."""
    words = [choice for choice in choices if str(value) in choice.split("_")]
    close = words or difflib.get_close_matches(str(value), choices, n=1)
    return f" Did you mean {' or '.join(repr(choice) for choice in close)}?" if close else ""


def describe(error: dict[str, Any]) -> str:
    """One line for one schema violation: the key, the bad value, what is allowed."""
    loc = error["loc"]
    key, allowed, description = _walk(loc)
    if error["type"] == "missing":
        return f"{key}: missing required key" + (f" ({description})" if description else "")
    if error["type"] == "extra_forbidden":
        return (
            f"{key}: unknown key; allowed here: {', '.join(allowed)}."
            + hint(loc[-1], allowed)
        )
    if error["type"] == "union_tag_invalid":
        names = list(SPECS)
        return (
            f"{key}.name = {error['ctx']['tag']!r}: unknown initializer; allowed: "
            f"{', '.join(names)}.{hint(error['ctx']['tag'], names)}"
        )
    message = error["msg"].removeprefix("Value error, ")
    if not loc:  # a rule across sections: its message names the keys
        return message
    if isinstance(error["input"], dict):  # a rule across the keys of a section
        return message if message.startswith(f"{key}.") else f"{key}: {message}"
    if isinstance(error["input"], float) and not math.isfinite(error["input"]):  # pydantic checks the bounds first
        message = "Input should be a finite number"
    line = f"{key} = {error['input']!r}: {message}"
    if error["type"] == "literal_error":
        line += "." + hint(error["input"], re.findall(r"'([^']*)'", error["ctx"]["expected"]))
    return line


def section_rules_behind(raw: Any, errors: list[dict[str, Any]]) -> list[str]:
    """The rules between the keys of a section, or of a network, that pydantic skips once one
    of its keys is bad, checked with the bad keys left out (a rule that needs one says nothing)."""
    bad: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for error in errors:
        loc = tuple(map(str, error["loc"]))
        if loc and loc[0] == "networks" and len(loc) > 2:
            bad[loc[:2]].add(loc[2])
        elif len(loc) > 1 and loc[0] not in ("networks", "initializers"):
            bad[loc[:1]].add(loc[1])
    lines = []
    for where, keys in bad.items():
        model = ModelParams if where[0] == "networks" else Params.model_fields[where[0]].annotation
        values = raw
        for part in where:
            values = values.get(part) if isinstance(values, dict) else None
        if not isinstance(values, dict) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        section = model.model_construct(**{k: None if k in keys else v for k, v in values.items()
                                           if k in model.model_fields})
        for name, rule in model.__pydantic_decorators__.model_validators.items():
            if rule.info.mode != "after":
                continue
            try:
                getattr(section, name)()
            except ValueError as exc:
                key = ".".join(where)
                lines.append(str(exc) if str(exc).startswith(f"{key}.") else f"{key}: {exc}")
            except Exception:  # the rule needs a key that is bad: that key's own line says what is wrong
                continue
    return lines
