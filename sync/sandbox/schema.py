"""Validate requests against a compact schema (see ``derive_zoho_schema.py`` for its shape).

A compact schema maps ``"METHOD /path/{param}"`` to the operation's parameters (``in``,
``required``, value ``schema``) and its JSON ``body`` schema, using a subset of JSON Schema:
``type``, ``enum``, ``pattern`` (matched against the whole value), ``minimum``/``maximum``,
``minLength``/``maxLength``, ``minItems``/``maxItems``/``uniqueItems``, ``items``,
``properties``, ``patternProperties``, ``required``, ``additionalProperties: false`` and
``anyOf``. Query values arrive as strings: a digit string counts as an integer where the
schema allows one, ``true``/``false`` as a boolean, and an array value is comma-separated.

``Schema.check`` never raises for a bad request: it returns every ``Violation`` it finds, and
the emulator decides which ones the real vendor rejects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

#: ``Schema.check`` body argument when the request had no body at all.
NO_BODY: Any = object()


@dataclass(frozen=True)
class Violation:
    """One way a request departs from the schema.

    ``where`` is ``query.NAME``, ``header.NAME``, ``path.NAME`` or ``body/pointer``; ``kind``
    is ``missing``, ``unknown`` or ``invalid``.
    """

    where: str
    kind: str
    message: str

    @property
    def name(self) -> str:
        """The parameter or body field concerned (``limit``, ``/cf/cf_x``)."""
        return self.where.split(".", 1)[1] if "." in self.where else self.where[len("body") :]

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Operation:
    """One method + path template of the schema, with a regex matching concrete paths."""

    key: str
    parameters: Mapping[str, Any]
    body: Mapping[str, Any] | None
    path_regex: re.Pattern[str]


class Schema:
    """A compact schema, ready to match and check requests."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.operations = [_operation(key, op) for key, op in data["operations"].items()]
        # Literal segments outrank parameters: /tickets/search is not /tickets/{ticketId}.
        self.operations.sort(key=lambda op: op.key.count("{"))

    @classmethod
    def load(cls, package: str, name: str) -> Schema:
        """Load a schema shipped as package data."""
        text = resources.files(package).joinpath(name).read_text(encoding="utf-8")
        return cls(json.loads(text))

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """Find the operation serving ``method path``; also return its path parameters."""
        for op in self.operations:
            if not op.key.startswith(method.upper() + " "):
                continue
            found = op.path_regex.fullmatch(path)
            if found:
                return op, found.groupdict()
        return None

    def check(
        self,
        op: Operation,
        path_params: Mapping[str, str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: Any = NO_BODY,
    ) -> list[Violation]:
        """Every violation of ``op`` by this request (``headers`` must be case-insensitive)."""
        found: list[Violation] = []
        sources = {"path": path_params, "query": query, "header": headers}
        for name, param in op.parameters.items():
            value = sources[param["in"]].get(name)
            where = f"{param['in']}.{name}"
            if value is None:
                if param["required"]:
                    found.append(Violation(where, "missing", "required parameter is missing"))
                continue
            found += check_param(param["schema"], value, where)
        declared = {n for n, p in op.parameters.items() if p["in"] == "query"}
        for name in query:
            if name not in declared:
                found.append(Violation(f"query.{name}", "unknown", "undeclared parameter"))
        found += self._check_body(op, body)
        return found

    @staticmethod
    def _check_body(op: Operation, body: Any) -> list[Violation]:
        if op.body is None:
            if body is NO_BODY:
                return []
            return [Violation("body", "unknown", "this operation takes no body")]
        if body is NO_BODY:
            return [Violation("body", "missing", "a JSON body is required")]
        return check_value(op.body, body, "body")


def _operation(key: str, op: Mapping[str, Any]) -> Operation:
    _, template = key.split(" ", 1)
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return Operation(key, op["parameters"], op["body"], re.compile(pattern))


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def check_param(schema: Mapping[str, Any], raw: str, where: str) -> list[Violation]:
    """Check one query, header or path value (a string on the wire) against ``schema``."""
    types = schema.get("type", [])
    if "array" in types:
        items = raw.split(",")
        found = _check_array_size(schema, items, where)
        for item in items:
            found += check_param(schema.get("items", {}), item.strip(), where)
        return found
    if "integer" in types and re.fullmatch(r"-?[0-9]+", raw):
        return _check_number(schema, int(raw), where) + _check_enum(schema, raw, where)
    if "boolean" in types and raw in ("true", "false"):
        return []
    if "null" in types and raw == "null":
        return []
    if "object" in types:
        return _check_json_param(schema, raw, where)
    if types and "string" not in types:
        return [Violation(where, "invalid", f"{raw!r} is not of type {'/'.join(types)}")]
    return _check_string(schema, raw, where) + _check_enum(schema, raw, where)


def _check_json_param(schema: Mapping[str, Any], raw: str, where: str) -> list[Violation]:
    try:
        return check_value(schema, json.loads(raw), where)
    except ValueError:
        return [Violation(where, "invalid", "is not a JSON object")]


def check_value(schema: Mapping[str, Any], value: Any, where: str) -> list[Violation]:
    """Check a JSON value against ``schema``; ``where`` is its pointer (``body/contact``)."""
    kind = _json_type(value)
    types = schema.get("type")
    if types and kind not in types and not (kind == "integer" and "number" in types):
        return [Violation(where, "invalid", f"expected {'/'.join(types)}, got {kind}")]
    found = _check_enum(schema, value, where)
    if kind == "string":
        found += _check_string(schema, value, where)
    elif kind in ("integer", "number"):
        found += _check_number(schema, value, where)
    elif kind == "array":
        found += _check_array_size(schema, value, where)
        found += [v for i, item in enumerate(value) for v in _items(schema, item, f"{where}/{i}")]
    elif kind == "object":
        found += _check_object(schema, value, where)
    if "anyOf" in schema and not any(not check_value(s, value, where) for s in schema["anyOf"]):
        found.append(Violation(where, "missing", _any_of_message(schema["anyOf"])))
    return found


def _items(schema: Mapping[str, Any], item: Any, where: str) -> list[Violation]:
    return check_value(schema["items"], item, where) if "items" in schema else []


def _any_of_message(options: list[Mapping[str, Any]]) -> str:
    names = [" + ".join(option["required"]) for option in options if "required" in option]
    if len(names) == len(options):
        return "one of " + ", ".join(names) + " is required"
    return "matches none of the allowed shapes"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_enum(schema: Mapping[str, Any], value: Any, where: str) -> list[Violation]:
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(map(str, schema["enum"]))
        return [Violation(where, "invalid", f"{value!r} is not one of {allowed}")]
    return []


def _check_string(schema: Mapping[str, Any], value: str, where: str) -> list[Violation]:
    found = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        found.append(Violation(where, "invalid", f"longer than {schema['maxLength']} characters"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        found.append(Violation(where, "invalid", f"shorter than {schema['minLength']} characters"))
    if "pattern" in schema and not _regex(schema["pattern"]).fullmatch(value):
        found.append(Violation(where, "invalid", f"{value!r} does not match the pattern"))
    return found


def _check_number(schema: Mapping[str, Any], value: float, where: str) -> list[Violation]:
    if "maximum" in schema and value > schema["maximum"]:
        return [Violation(where, "invalid", f"{value} is above the maximum {schema['maximum']}")]
    if "minimum" in schema and value < schema["minimum"]:
        return [Violation(where, "invalid", f"{value} is below the minimum {schema['minimum']}")]
    return []


def _check_array_size(schema: Mapping[str, Any], value: list[Any], where: str) -> list[Violation]:
    found = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        found.append(Violation(where, "invalid", f"more than {schema['maxItems']} items"))
    if "minItems" in schema and len(value) < schema["minItems"]:
        found.append(Violation(where, "invalid", f"fewer than {schema['minItems']} items"))
    if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) < len(
        value
    ):
        found.append(Violation(where, "invalid", "items are not unique"))
    return found


def _check_object(
    schema: Mapping[str, Any], value: Mapping[str, Any], where: str
) -> list[Violation]:
    found = [
        Violation(f"{where}/{name}", "missing", "required field is missing")
        for name in schema.get("required", [])
        if name not in value
    ]
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    for name, item in value.items():
        pointer = f"{where}/{name}"
        if name in properties:
            found += check_value(properties[name], item, pointer)
            continue
        matching = [s for p, s in patterns.items() if _regex(p).fullmatch(name)]
        for sub in matching:
            found += check_value(sub, item, pointer)
        if not matching and schema.get("additionalProperties") is False:
            found.append(Violation(pointer, "unknown", "unknown field"))
    return found
