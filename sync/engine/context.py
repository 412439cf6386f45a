"""Per-connection merge settings, derived once per run from the config and the adapter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from sync.engine.mapping import FieldMap, field_maps
from sync.engine.merge import FieldContext
from sync.vendors.base import Capabilities

#: Columns a create sends even when the connection does not sync them afterwards.
CREATE_FIELDS = ("title", "description", "requester_email", "due_at")


@dataclass(frozen=True)
class SyncRules:
    """What one connection syncs and how conflicts go."""

    maps: Mapping[str, FieldMap]
    policies: Mapping[str, str]
    writable: frozenset[str]
    tie_break: str = "local"

    @classmethod
    def build(
        cls,
        fields: Mapping[str, Mapping[str, str] | None],
        policy_for: Mapping[str, str],
        capabilities: Capabilities,
        *,
        direction: str,
        tie_break: str,
    ) -> SyncRules:
        maps = {
            name: replace(fmap, broader=capabilities.broader.get(name))
            for name, fmap in field_maps(fields).items()
            if name in capabilities.readable or name in capabilities.writable
        }
        policies = dict(policy_for)
        if direction == "pull":
            # a pull-only connection never sends: the vendor's value always wins
            policies = dict.fromkeys(maps, "remote")
        writable = frozenset(capabilities.writable if direction != "pull" else ())
        return cls(maps, policies, writable, tie_break)

    def contexts(
        self, local_time: datetime | None, remote_time: datetime | None
    ) -> dict[str, FieldContext]:
        return {
            name: FieldContext(
                fmap=fmap,
                policy=self.policies.get(name, "newest"),
                writable=name in self.writable,
                local_time=local_time,
                remote_time=remote_time,
                tie_break=self.tie_break,
            )
            for name, fmap in self.maps.items()
        }

    def unwritable(self) -> list[str]:
        """Synced fields this connection can read but never write."""
        return sorted(name for name in self.maps if name not in self.writable)

    def create_map(self, name: str) -> FieldMap:
        """The map used to send ``name`` in a create (pass-through when not synced)."""
        return self.maps.get(name, FieldMap(name))

    def with_policy(self, policy: str) -> SyncRules:
        return replace(self, policies=dict.fromkeys(self.maps, policy))
