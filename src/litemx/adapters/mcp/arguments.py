"""Curated words for tool arguments that fail the input schema (the SDK's own text would be
pydantic's exception message, echoing the input)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

MAX_PROBLEMS = 10


def problems(schema: dict[str, Any], arguments: Any) -> list[str]:
    """One sentence per failing field, naming the field and what it must be (never its value)."""
    validator = Draft202012Validator(schema)
    found = [_describe(e) for e in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))]
    return found[:MAX_PROBLEMS] or ["the arguments do not match the tool's input schema"]


def _describe(error: ValidationError) -> str:
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in (error.instance or {})]
        return f"{', '.join(missing) or 'a field'}: is required"
    if error.validator == "additionalProperties":
        return f"{_field(error)}: unknown argument(s); see the tool's input schema"
    return f"{_field(error)}: must be {expectation(error.schema)}"


def _field(error: ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "arguments"


def expectation(schema: Any) -> str:
    """What a (sub)schema accepts, in words: type, bounds, choices."""
    if not isinstance(schema, dict):
        return "valid"
    if "anyOf" in schema:
        return " or ".join(expectation(s) for s in schema["anyOf"])
    words = [str(schema.get("type", "a valid value"))]
    bounds = [f"{label} {schema[key]}" for key, label in (("minimum", ">="), ("maximum", "<="),
                                                          ("minLength", "length >="), ("maxLength", "length <="),
                                                          ("minItems", "items >="), ("maxItems", "items <="))
              if key in schema]
    if "enum" in schema:
        bounds.append("one of " + ", ".join(map(str, schema["enum"])))
    return " ".join(words + ([f"({', '.join(bounds)})"] if bounds else []))
