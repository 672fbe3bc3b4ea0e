"""Write docs/parameters.md, the reference of every key of params.yaml, from the schema:
each field's type, bounds, default and description, and the value params.yaml gives it.

    python -m initstudy.params.reference            # rewrites docs/parameters.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from initstudy.atomic import write_text
from initstudy.params.schema import MAX_COUNT, SECTIONS, SPECS, ModelParams, Params

ROOT = Path(__file__).resolve().parents[3]
OUT = ROOT / "docs" / "parameters.md"


def _number(value: float) -> str:
    return "2³¹ − 1" if value == MAX_COUNT else f"{value:g}"


def allowed(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    """A JSON-schema property in words: `one of a, b`, `integer > 0`, `list of …`."""
    if "$ref" in schema:
        return allowed(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
    if "anyOf" in schema:
        return " or ".join(allowed(option, definitions) for option in schema["anyOf"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return "`null`"
    if kind == "array":
        least = f" (at least {schema['minItems']})" if schema.get("minItems") else ""
        return f"list of {allowed(schema.get('items', {}), definitions)}{least}"
    if kind == "object":
        keys = allowed(schema["propertyNames"], definitions) if "propertyNames" in schema else "name"
        return f"mapping of {keys} to {allowed(schema.get('additionalProperties', {}), definitions)}"
    if "discriminator" in schema or "oneOf" in schema:
        return "an initializer spec"
    words = {"integer": "integer", "number": "number", "string": "text", "boolean": "`true` or `false`"}.get(kind, "any")
    signs = {"exclusiveMinimum": ">", "gt": ">", "minimum": "≥", "ge": "≥",
             "exclusiveMaximum": "<", "lt": "<", "maximum": "≤", "le": "≤"}  # with a validator, pydantic's own names
    bounds = [f"{sign} {_number(schema[key])}" for key, sign in signs.items() if key in schema]
    if "pattern" in schema:
        bounds.append(f"matching `{schema['pattern']}`")
    return " ".join([words, ", ".join(bounds)]).strip()


def _inline(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return f"`{text if len(text) <= 60 else text[:57] + '…'}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def field_table(model: type[BaseModel], values: dict[str, Any] | None) -> list[str]:
    """A table of `model`'s fields: key, what is allowed, default (or the value in params.yaml), meaning."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    third = "in params.yaml" if values is not None else "default"
    lines = [f"| key | allowed | {third} | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name == "name" and name not in (values or {}):  # an initializer's: its heading
            continue
        if values is not None:
            shown = _inline(values[name]) if name in values else "—"
        else:
            shown = "required" if field.is_required() else _inline(field.get_default(call_default_factory=True))
        lines.append(f"| `{name}` | {_cell(allowed(schema['properties'][name], definitions))} | {_cell(shown)} "
                     f"| {_cell(field.description or '')} |")
    return lines


def _kinds() -> list[str]:
    """The initializer kinds: each `name` with its arguments."""
    lines: list[str] = []
    for model in dict.fromkeys(SPECS.values()):
        names = [name for name, spec in SPECS.items() if spec is model]
        lines += ["", f"#### {', '.join(f'`{name}`' for name in names)}", ""]
        if model.__doc__:  # a spec's own docstring (a subclass does not inherit its parent's)
            lines += [" ".join(model.__doc__.split()), ""]
        lines += field_table(model, None) if len(model.model_fields) > 1 else ["No arguments but the seed."]
    return lines


def reference(values: dict[str, Any]) -> str:
    """The whole reference, for the params `values` (params.yaml's)."""
    lines = ["# Parameters", "",
             "Every key of `params.yaml`, written by `python -m initstudy.params.reference` from the schema in",
             "`src/initstudy/params/schema.py` (edit the descriptions there; a test fails when this page is stale).",
             "`check_params` refuses any other key, and any value outside what is allowed, naming the key.", ""]
    lines += [f"- [`{section}`](#{section}): {Params.model_fields[section].description}" for section in SECTIONS]
    for section in SECTIONS:
        field = Params.model_fields[section]
        lines += ["", f"## {section}", "", f"{field.description[0].upper()}{field.description[1:]}.", ""]
        if section == "initializers":
            lines += [f"A mapping of labels to specs: a label names runs and stages, so it holds only letters, digits "
                      f"and `_`. A spec is the name of an initializer (its defaults), or a mapping with `name` and "
                      f"arguments; without `name`, the label is the name. In params.yaml: "
                      f"{', '.join(f'`{label}`' for label in values[section])}."]
            lines += _kinds()
        elif section == "networks":
            lines += [f"A mapping of labels to networks. In params.yaml: "
                      f"{', '.join(f'`{label}`' for label in values[section])}.", ""]
            lines += field_table(ModelParams, None)
        else:
            lines += field_table(field.annotation, values[section])
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    write_text(args.out, reference(yaml.safe_load(args.params.read_text())))


if __name__ == "__main__":
    main()
