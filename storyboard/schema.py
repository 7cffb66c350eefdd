"""Stage 2a, schema: check a loaded storyboard against the JSON Schema of format v1.

Every schema error becomes a :class:`~storyboard.errors.Problem` at the YAML position of the
offending node, with a message written for people ("unknown key 'promt'", "did you mean
'prompt'?") rather than jsonschema's default text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from storyboard.errors import Problem
from storyboard.loader import Document, JsonPath, walk
from storyboard.suggest import did_you_mean

__all__ = ["schema_path", "schema_text", "validate_schema"]

_CHECKOUT_SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "storyboard.schema.json"


def schema_path() -> Path:
    """Where the schema file is: inside the wheel, or in the checkout for editable installs."""
    packaged = resources.files("storyboard") / "_schemas" / "storyboard.schema.json"
    if packaged.is_file():
        return Path(str(packaged))
    return _CHECKOUT_SCHEMA


def schema_text() -> str:
    """The JSON Schema of the storyboard format, as text."""
    return schema_path().read_text(encoding="utf-8")


def _catalogue() -> tuple[tuple[str, str], ...]:
    """``(model id, provider)`` of every model in the catalogue as it is now."""
    from storyboard.catalog import MODELS

    return tuple((spec.id, spec.provider) for spec in MODELS.values())


@cache
def _schema(models: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """The schema with the catalogue's model ids and provider names.

    The file lists the same ones for editors (tests keep it so); taking them from the
    catalogue makes a model or provider added there valid without editing the file.
    """
    from storyboard.catalog import PREVIEW_PROVIDER

    data: dict[str, Any] = json.loads(schema_text())
    ids = [model for model, _ in models]
    for where in (data["$defs"]["shot"], data["properties"]["defaults"]):
        where["properties"]["model"]["enum"] = ids
    caps = data["properties"]["render"]["properties"]["concurrency"]
    each = next(iter(caps["properties"].values()))
    names = dict.fromkeys([*(provider for _, provider in models), PREVIEW_PROVIDER])
    caps["properties"] = {name: dict(each) for name in names}
    return data


@cache
def _validator(models: tuple[tuple[str, str], ...]) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema(models))


_TYPE_NAMES = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"


def _leaf_errors(error: Any) -> Iterator[Any]:
    """For anyOf/oneOf failures, the branch error that best explains what is wrong."""
    from jsonschema.exceptions import best_match

    if error.validator in ("anyOf", "oneOf") and error.context:
        misfits = {
            e.relative_schema_path[0]
            for e in error.context
            if not e.relative_path and e.validator in ("type", "required")
        }
        fitting = [e for e in error.context if e.relative_schema_path[0] not in misfits]
        if fitting:
            best = best_match(fitting)
            if best is not None:
                yield from _leaf_errors(best)
                return
        # Prefer branches whose type matched the instance: "unknown key" beats "not a string".
        typed = [e for e in error.context if e.validator not in {"type", "required"}]
        pool = typed or list(error.context)
        best = best_match(pool)
        if best is not None:
            yield from _leaf_errors(best)
            return
    yield error


def _problems_for(doc: Document, error: Any) -> Iterator[Problem]:
    path: JsonPath = tuple(error.absolute_path)
    kind = error.validator
    value = error.instance
    schema = error.schema
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        for extra in sorted(set(value) - set(allowed)):
            suggestion = did_you_mean(extra, allowed) or "allowed keys: " + ", ".join(allowed)
            yield doc.problem((*path, extra), f"unknown key {extra!r}", hint=suggestion, key=True)
        return
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        for name in missing:
            yield doc.problem(path, f"missing required key {name!r}")
        return
    hint: str | None = None
    if "propertyNames" in error.schema_path:
        yield doc.problem(
            (*path, value),
            f"{value!r} is not a valid variable name",
            hint="use letters, digits and _, not starting with a digit",
            key=True,
        )
        return
    if kind == "enum":
        choices = error.validator_value
        message = f"{_describe(value)} is not one of: {', '.join(map(str, choices))}"
        hint = did_you_mean(value, choices)
        if isinstance(value, int) and path and path[-1] == "aspect_ratio":
            hint = 'YAML reads an unquoted 16:9 as a number: quote it, "16:9"'
    elif kind == "const":
        if path == ("storyboard",):
            message = f"unsupported format version {value!r}: this tool reads format 1"
            hint = "write `storyboard: 1`"
        else:
            message = f"must be {error.validator_value!r}"
    elif kind == "type":
        expected = error.validator_value
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        message = f"expected {wanted}, got {_describe(value)}"
        if path == ("output", "fps"):
            message = f"expected an integer or auto, got {_describe(value)}"
            hint = (
                "write whole frames per second, e.g. 24 (a rate like 23.976 is not supported)"
                if isinstance(value, float)
                else "write an integer (frames per second) or auto"
            )
        elif path and path[-1] == "aspect_ratio" and isinstance(value, int):
            hint = 'YAML reads an unquoted 16:9 as a number: quote it, "16:9"'
        elif "string" in names and isinstance(value, (int, float)):
            hint = "quote the value to make it text"
    elif kind == "pattern":
        if path == ("output", "fps"):
            message = f"{value!r} is not a frame rate"
            hint = "write an integer (frames per second) or auto"
        elif path and path[-1] in ("id", "extends", "continues"):
            message = f"{value!r} is not a valid shot id"
            hint = "use lowercase letters, digits, '-' and '_', starting with a letter or digit"
        else:
            message = f"{value!r} does not match {error.validator_value!r}"
    elif kind in ("minItems", "maxItems"):
        word = "least" if kind == "minItems" else "most"
        message = f"takes at {word} {error.validator_value} items, not {len(value)}"
    elif kind == "propertyNames":
        message = f"{value!r} is not a valid variable name"
        hint = "use letters, digits and _, not starting with a digit"
    else:
        message = error.message
    yield doc.problem(path, message, hint=hint)


def validate_schema(doc: Document, data: Any | None = None) -> list[Problem]:
    """Check ``data`` (default: the document's data) against the schema; all problems."""
    instance = doc.data if data is None else data
    validator = _validator(_catalogue())
    leaves = [leaf for error in validator.iter_errors(instance) for leaf in _leaf_errors(error)]
    # A value of the wrong type also fails its enum/pattern/range: say only the first thing.
    mistyped = {tuple(e.absolute_path) for e in leaves if e.validator == "type"}
    problems: list[Problem] = []
    for where, value in walk(instance):
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(doc.problem(where, f"expected a finite number, got {value}"))
    for leaf in leaves:
        if leaf.validator != "type" and tuple(leaf.absolute_path) in mistyped:
            continue
        problems.extend(_problems_for(doc, leaf))
    return problems
