"""One line per schema violation: the dotted key, the bad value, what is allowed."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel

from initstudy.params.schema import SPECS, InitSpec, Params


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
    close = difflib.get_close_matches(str(value), choices, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


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
    line = f"{key} = {error['input']!r}: {message}"
    if error["type"] == "literal_error":
        line += "." + hint(error["input"], re.findall(r"'([^']*)'", error["ctx"]["expected"]))
    return line
