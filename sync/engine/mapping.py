"""Canonical values <-> vendor values, through a connection's ``fields`` maps (docs/architecture.md
§2.2).

A field with a map translates every value through it; a field without one (``null`` in
the config: ``title``, ``description``...) passes values through unchanged. A value with
no entry in the map is an ``Unmapped`` error for that ticket in either direction: never
pushed, never written into the mirror.

A many-to-one map (two canonical values onto one vendor value) pulls back as the first
canonical value listed, and never rewrites a local value that already maps to what the
vendor holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sync.errors import ItemError


class Unmapped(ItemError):
    """A value has no entry in the connection's map for its field."""

    kind = "unmapped"


def same_vendor_value(a: str | None, b: str | None) -> bool:
    """Vendor values compare case-insensitively and ignoring surrounding blanks."""
    if a is None or b is None:
        return a is b
    return a.strip().casefold() == b.strip().casefold()


@dataclass(frozen=True)
class FieldMap:
    """The map of one field; ``values`` None means values pass through.

    ``broader``: the vendor's wider value for a pulled one (Sirportly's ``"3/2"`` -> ``"3"``),
    tried when the exact value has no entry; None when the vendor has no such hierarchy.
    """

    field: str
    values: Mapping[str, str] | None = None
    broader: Callable[[str], str | None] | None = None

    def to_vendor(self, canonical: str | None) -> str | None:
        """The vendor value for ``canonical``; raises ``Unmapped`` when there is none."""
        if canonical is None or self.values is None:
            return canonical
        if canonical in self.values:
            return self.values[canonical]
        raise Unmapped(
            f"local {self.field} {canonical!r} has no entry in this connection's "
            f"fields.{self.field} map; add it, or correct the ticket"
        )

    def to_canonical(self, vendor: str | None, local: str | None = None) -> str | None:
        """The canonical value for ``vendor``, keeping ``local`` when it already maps there."""
        if vendor is None or self.values is None:
            return vendor
        wider = self.broader(vendor) if self.broader else None
        for candidate in (vendor, wider) if wider is not None else (vendor,):
            found = self._canonical_of(candidate, local)
            if found is not None:
                return found
        raise Unmapped(
            f"the vendor's {self.field} {vendor!r} has no entry in this connection's "
            f"fields.{self.field} map; add it to the map (the value was not written)"
        )

    def holds(self, canonical: str | None, vendor: str | None) -> bool:
        """Whether the vendor's value already stands for ``canonical`` (its own entry, or,
        with ``broader``, a value that maps back to it); raises ``Unmapped`` as ``to_vendor``."""
        if same_vendor_value(self.to_vendor(canonical), vendor):
            return True
        if self.broader is None or vendor is None or canonical is None:
            return False
        try:
            return self.to_canonical(vendor, canonical) == canonical
        except Unmapped:
            return False

    def _canonical_of(self, vendor: str, local: str | None) -> str | None:
        assert self.values is not None
        if local is not None and same_vendor_value(self.values.get(local), vendor):
            return local
        for canonical, value in self.values.items():
            if same_vendor_value(value, vendor):
                return canonical
        return None


def field_maps(fields: Mapping[str, Mapping[str, str] | None]) -> dict[str, FieldMap]:
    """One ``FieldMap`` per synced field of a connection."""
    return {name: FieldMap(name, values) for name, values in fields.items()}


def canonical_text(value: object) -> str | None:
    """A mirror column's value as the canonical string the merge compares."""
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def column_value(field: str, text: str | None) -> object:
    """The canonical string ``text`` as the value to store in the mirror's column."""
    if text is None or field != "due_at":
        return text
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
