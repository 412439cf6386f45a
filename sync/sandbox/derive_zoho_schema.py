"""Derive the compact Zoho Desk request schema from Zoho's own OpenAPI files.

``derive(folder)`` reads ``Ticket.json``, ``TicketComment.json``, ``Search.json`` and
``Common.json`` of
``zoho/zohodesk-oas`` (v1.0) and returns the compact schema that ``sync/sandbox/zoho_schema.json``
ships: for each operation the emulator serves, its parameters (``in``, ``required`` and a value
schema) and its request body. Only validation keywords are kept (types, enums, ranges, lengths,
patterns, properties, required); prose, examples, formats and responses are dropped.

The shipped ``zoho_schema.json`` is the only input the emulator and the tests read; Zoho's OAS
files are not part of this repository. To regenerate or check it, fetch them first (Zoho
publishes them at https://github.com/zoho/zohodesk-oas; the ``v1.0`` folder), then::

    python -m sync.sandbox.derive_zoho_schema OAS_FOLDER > sync/sandbox/zoho_schema.json
    python -m sync.sandbox.derive_zoho_schema --check OAS_FOLDER

``--check`` exits 0 when the shipped file is exactly the derivation of ``OAS_FOLDER``, else 1
with a message (run it after Zoho changes its files). ``tests/vendors/test_zoho_schema.py``
checks the derivation itself on small OAS documents of its own, which carry each defect below.

Known defects of the OAS files, normalised here (docs/architecture.md §7.11); each one is listed
with its fix:

1. ``orgId`` is declared ``in: query`` (Common.json) while Zoho's API page and every client send
   it as a header: it becomes ``in: header`` (headers are matched case-insensitively).
2. Request bodies are ``allOf`` chains whose every branch says ``additionalProperties: false``,
   so a naive validator rejects even ``{"status": "Closed"}`` (``status`` lives in one branch,
   and every other branch forbids it). The branches are merged into one closed object holding
   the union of their properties and required lists.
3. Patterns use Java-only regex classes: ``\\P{InBasicLatin}`` (any character outside U+0000..
   U+007F) becomes the range ``\\u0080-\\U0010ffff``; ``\\p{L}`` and ``\\p{N}`` become ``\\w``
   (Unicode letters and digits, plus ``_``) and ``\\p{M}`` the combining-mark blocks; an inline
   ``(?i)`` in mid-pattern (an error in Python) becomes the scoped group ``(?i:...)``.
4. ``createTicket`` lists ``contactId`` as required, while its own description (and Zoho's API
   page) says a ``contact`` object may be sent instead: the requirement becomes "``contactId``
   or ``contact``" (an ``anyOf`` of two ``required`` lists).
5. ``sortBy`` enums list only ascending keys, while the descriptions say a ``-`` prefix sorts
   descending: the ``-``-prefixed keys are added.

Two reading conventions are not defects but are stated here because the validator relies on
them: array-valued query parameters are sent comma-separated (``include=contacts,team``, as
Zoho's descriptions say), and patterns are matched against the whole value, as Zoho's
Java back end does (``([0-9]+)`` for an id would otherwise accept ``"abc1"``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

#: The operations the emulator serves: (OAS file, path, method).
OPERATIONS = (
    ("Search.json", "/api/v1/tickets/search", "get"),
    ("Ticket.json", "/api/v1/tickets", "get"),
    ("Ticket.json", "/api/v1/tickets", "post"),
    ("Ticket.json", "/api/v1/tickets/{ticketId}", "get"),
    ("Ticket.json", "/api/v1/tickets/{ticketId}", "patch"),
    ("TicketComment.json", "/api/v1/tickets/{ticketId}/comments", "get"),
    ("TicketComment.json", "/api/v1/tickets/{ticketId}/comments", "post"),
)

#: Validation keywords kept from a JSON Schema; everything else is prose or response detail.
KEPT = (
    "type",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "required",
    "additionalProperties",
)

_NOT_BASIC_LATIN = "\\u0080-\\U0010ffff"
# Blocks of combining marks (Unicode category M) that occur in e-mail local parts and names.
_MARKS = "\\u0300-\\u036f\\u1ab0-\\u1aff\\u1dc0-\\u1dff\\u20d0-\\u20ff\\ufe20-\\ufe2f"


def fix_pattern(pattern: str) -> str:
    """Translate a Java regex from the OAS files into an equivalent Python one (defect 3)."""
    fixed = pattern.replace("\\P{InBasicLatin}", _NOT_BASIC_LATIN)
    fixed = fixed.replace("\\p{L}", "\\w").replace("\\p{N}", "\\w").replace("\\p{M}", _MARKS)
    fixed = re.sub(r"\(\?i\)\(([^()]*)\)", r"(?i:\1)", fixed)
    re.compile(fixed)  # a defect this function does not know fails the derivation loudly
    return fixed


class _Loader:
    """Reads OAS files once and resolves ``$ref`` pointers, relative or across files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, Any] = {}

    def document(self, name: str) -> Any:
        if name not in self._files:
            self._files[name] = json.loads((self.folder / name).read_text(encoding="utf-8"))
        return self._files[name]

    def resolve(self, node: Any, current: str) -> tuple[Any, str]:
        """Follow ``$ref`` chains; return the target node and the file it lives in."""
        while isinstance(node, dict) and "$ref" in node:
            target, _, pointer = node["$ref"].partition("#")
            current = Path(target).name if target else current
            node = self.document(current)
            for part in pointer.strip("/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, current


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if kind is None:
        return []
    return list(kind) if isinstance(kind, list) else [kind]


def compact(loader: _Loader, node: Any, current: str) -> dict[str, Any]:
    """Reduce a JSON Schema to its validation keywords, merging ``allOf`` (defect 2)."""
    schema, current = loader.resolve(node, current)
    if "allOf" in schema:
        return _merge_all_of(loader, schema, current)
    out: dict[str, Any] = {key: schema[key] for key in KEPT if key in schema}
    if "type" in out:
        out["type"] = _types(schema)
    if "pattern" in out:
        out["pattern"] = fix_pattern(out["pattern"])
    if "items" in schema:
        out["items"] = compact(loader, schema["items"], current)
    if "properties" in schema:
        out["properties"] = {
            name: compact(loader, sub, current) for name, sub in schema["properties"].items()
        }
    if "patternProperties" in schema:
        out["patternProperties"] = {
            fix_pattern(key): compact(loader, sub, current)
            for key, sub in schema["patternProperties"].items()
        }
    if "anyOf" in schema:
        out["anyOf"] = [compact(loader, sub, current) for sub in schema["anyOf"]]
    return out


def _merge_all_of(loader: _Loader, schema: dict[str, Any], current: str) -> dict[str, Any]:
    merged: dict[str, Any] = {"type": ["object"], "properties": {}, "required": []}
    closed = schema.get("additionalProperties") is False
    for branch in schema["allOf"]:
        part = compact(loader, branch, current)
        merged["properties"].update(part.get("properties", {}))
        merged["required"] += [n for n in part.get("required", []) if n not in merged["required"]]
        if "patternProperties" in part:
            merged.setdefault("patternProperties", {}).update(part["patternProperties"])
        closed = closed or part.get("additionalProperties") is False
    if closed:
        merged["additionalProperties"] = False
    if not merged["required"]:
        del merged["required"]
    return merged


def _parameter(loader: _Loader, node: Any, current: str) -> tuple[str, dict[str, Any]]:
    param, current = loader.resolve(node, current)
    name = param["name"]
    where = "header" if name == "orgId" else param["in"]  # defect 1
    schema = compact(loader, param.get("schema", {}), current)
    if name == "sortBy" and "enum" in schema:  # defect 5
        schema["enum"] = schema["enum"] + [f"-{key}" for key in schema["enum"]]
    return name, {"in": where, "required": bool(param.get("required")), "schema": schema}


def _body(loader: _Loader, operation: dict[str, Any], current: str) -> dict[str, Any] | None:
    if "requestBody" not in operation:
        return None
    body, current = loader.resolve(operation["requestBody"], current)
    schema = compact(loader, body["content"]["application/json"]["schema"], current)
    if operation.get("operationId") == "createTicket" and "contactId" in schema.get("required", []):
        schema["required"] = [name for name in schema["required"] if name != "contactId"]
        schema["anyOf"] = [{"required": ["contactId"]}, {"required": ["contact"]}]  # defect 4
    return schema


def derive(folder: Path | str) -> dict[str, Any]:
    """Return the compact schema for ``OPERATIONS``, derived from the OAS files in ``folder``."""
    loader = _Loader(Path(folder))
    operations: dict[str, Any] = {}
    for filename, path, method in OPERATIONS:
        item = loader.document(filename)["paths"][path]
        operation = item[method]
        nodes = list(item.get("parameters", [])) + list(operation.get("parameters", []))
        parameters = dict(_parameter(loader, node, filename) for node in nodes)
        operations[f"{method.upper()} {path}"] = {
            "operationId": operation.get("operationId"),
            "parameters": dict(sorted(parameters.items())),
            "body": _body(loader, operation, filename),
        }
    return {
        "source": "zoho/zohodesk-oas v1.0: " + ", ".join(sorted({f for f, _, _ in OPERATIONS})),
        "derived_by": "sync/sandbox/derive_zoho_schema.py",
        "operations": operations,
    }


def dumps(schema: dict[str, Any]) -> str:
    """The shipped file's exact text: sorted keys, one level of indentation."""
    return json.dumps(schema, indent=1, sort_keys=True, ensure_ascii=True) + "\n"


#: The derived schema this package ships.
SHIPPED = Path(__file__).with_name("zoho_schema.json")
USAGE = "usage: python -m sync.sandbox.derive_zoho_schema [--check] OAS_FOLDER"


def main(argv: list[str], shipped: Path = SHIPPED) -> int:
    """Print the derivation of ``OAS_FOLDER``; with ``--check``, compare it with ``shipped``
    instead: 0 when they are identical, 1 (and a message on stderr) when not."""
    if len(argv) == 2 and argv[0] == "--check":
        if shipped.read_text(encoding="utf-8") == dumps(derive(argv[1])):
            return 0
        sys.stderr.write(f"{shipped} is not the derivation of {argv[1]}: regenerate it\n")
        return 1
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.stderr.write(USAGE + "\n")
        return 2
    sys.stdout.write(dumps(derive(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
