"""The vendor registry: every vendor declares itself, loads lazily, ships, and nothing that
config validation needs imports an adapter or forms an import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from sync.vendors import registry
from sync.vendors.base import Adapter, Capabilities, adapter_class, registered
from sync.vendors.spec import VendorSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("vendor", list(registry.VENDORS))
def test_each_vendor_declares_itself(vendor: str) -> None:
    spec = registry.spec(vendor)
    assert isinstance(spec, VendorSpec) and spec.vendor == vendor
    assert spec.check_options({}) == []
    cls = adapter_class(vendor)
    assert issubclass(cls, Adapter) and cls.vendor == vendor
    if not spec.test_only:
        assert isinstance(cls.capabilities, Capabilities)
    assert registered()[vendor] is cls


def test_secrets_and_identifiers_are_declared_apart() -> None:
    def secrets(vendor: str) -> set[str]:
        return {c.name for c in registry.spec(vendor).credentials if c.secret}

    assert secrets("proprofs") == {"token"}
    assert secrets("zoho_desk") == {"client_secret", "refresh_token", "webhook_secret"}
    assert secrets("sirportly") == {"token", "secret"}
    assert registry.public_vendors() == ("kapture", "proprofs", "sirportly", "zoho_desk")


def test_unknown_vendor_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        registry.spec("freshdesk")


def test_validating_a_config_imports_no_adapter() -> None:
    code = (
        "import sys; from sync.config import parse_config; "
        "parse_config({'connections': {'k': {'vendor': 'zoho_desk', "
        "'base_url': 'https://desk.zoho.com', 'options': {'lookback_seconds': 5}, "
        "'credentials': {'client_id': 'i', 'client_secret': 's', 'refresh_token': 'r', "
        "'org_id': '1'}}}}, env={}); "
        "print(sorted(m for m in sys.modules if m.endswith('.adapter') or m == 'sync.http'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, path: Path, modules: Mapping[str, Path]) -> Iterator[str]:
    """Every sync module ``name`` imports: at the top, in functions, under TYPE_CHECKING."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in modules else base


def _cycles(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_sync_has_no_import_cycle() -> None:
    """No cycle anywhere in ``sync`` (docs/architecture.md §8.1); a module's own package
    ``__init__`` is not counted as something it depends on."""
    modules = {_module_name(p): p for p in (ROOT / "sync").rglob("*.py")}
    graph = {
        name: {
            m
            for m in _imports(name, path, modules)
            if m in modules and m != name and not name.startswith(m + ".")
        }
        for name, path in modules.items()
    }
    assert [sorted(cycle) for cycle in _cycles(graph)] == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_the_wheel_lists_every_package() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {_module_name(p.parent / "__init__.py") for p in (ROOT / "sync").rglob("__init__.py")}
    assert on_disk <= listed
    assert {f"sync.vendors.{vendor}" for vendor in registry.VENDORS} <= listed
