"""The three-way merge, per field: a pure function, no I/O (docs/architecture.md §3.2).

Each field is judged against its *base*, the last values both sides agreed on, stored on
the link as ``{"local": canonical, "remote": vendor}``. Each side's change is judged in
that side's own values (local in canonical values, remote in vendor values), so a lossy
map (two canonical values onto one vendor value) never produces phantom changes, and our
own writes, seen again on the next pull, compare equal: no echo, no ping-pong.

The decision table (one branch per line in ``merge_field``):

=============  ==============  ==========================================================
local          remote          decision
=============  ==============  ==========================================================
(no base)      any             first sight: take the remote value (an import)
unchanged      unchanged       nothing
changed        unchanged       push (or wait, if the vendor cannot write the field)
unchanged      changed         pull (many-to-one: keep a local value that maps there)
changed        changed         equal after mapping: agree; different: conflict -> policy
=============  ==============  ==========================================================

A field with a pending manual conflict waits until the operator settles it. A base entry
marked ``pending_push`` counts as changed locally: the vendor never took our value.

Three rules settle what the table sees before it runs; they sit below it, pure as well:

- ``late_writes`` / ``without_late_writes``: a vendor value that an update of a superseded
  lease generation sent is a late write of ours, not an edit: the base takes it with
  ``pending_push``, so the table pushes the mirror's value again (docs/architecture.md §7.3).
- ``activation``: a create that found its ticket at the vendor keeps, per field, what we
  sent, or the vendor's value (unwritable fields), or marks a follow-up value that did not
  land as still to push.
- ``agrees_with_base``: a fresh read before a push that still shows the base's vendor
  values changes nothing, so the push merges against the base without reading it in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sync.engine.mapping import FieldMap, Unmapped, same_vendor_value


class Action(StrEnum):
    NOOP = "noop"
    PUSH = "push"
    PULL = "pull"
    AGREE = "agree"  # both sides hold the same value; only the base moves
    CONFLICT = "conflict"  # settled by policy; ``winner`` says which side
    MANUAL = "manual"  # conflict left for the operator
    WAITING = "waiting"  # a manual conflict on this field is still open
    UNWRITABLE = "unwritable"  # a local change the vendor cannot take
    ERROR = "error"  # a value with no entry in the map


POLICIES = ("newest", "local", "remote", "manual")


@dataclass(frozen=True)
class FieldDecision:
    """What to do with one field.

    ``local`` is the canonical value the mirror ends with, ``remote`` the vendor value the
    vendor ends with; ``base`` the new base entry once the decision is carried out (None:
    the base stays). For ``PUSH`` (and a conflict won locally) ``remote`` is what to send;
    for ``PULL`` (and a conflict won remotely) ``local`` is what to write. ``unsent`` is
    the base entry to keep while a conflict won locally is not yet pushed.
    """

    field: str
    action: Action
    local: str | None = None
    remote: str | None = None
    base: dict[str, Any] | None = None
    winner: str | None = None  # "local" | "remote" for CONFLICT
    was_local: str | None = None
    was_remote: str | None = None
    error: str | None = None
    unsent: dict[str, Any] | None = None

    @property
    def pushes(self) -> bool:
        return self.action is Action.PUSH or (
            self.action is Action.CONFLICT and self.winner == "local"
        )

    @property
    def pulls(self) -> bool:
        return self.action is Action.PULL or (
            self.action is Action.CONFLICT and self.winner == "remote"
        )


@dataclass(frozen=True)
class FieldContext:
    """Everything about one field the merge needs besides its values."""

    fmap: FieldMap
    policy: str = "newest"
    writable: bool = True
    local_time: datetime | None = None
    remote_time: datetime | None = None
    tie_break: str = "local"


def merge_field(
    base: Mapping[str, Any] | None,
    local: str | None,
    remote: str | None,
    ctx: FieldContext,
) -> FieldDecision:
    """Decide one field from its base, the local (canonical) and remote (vendor) values."""
    name = ctx.fmap.field
    if base is not None and base.get("conflict") is not None:
        # an open manual conflict: nothing moves until the operator settles it (the values
        # go along, so the conflict can show the vendor's latest one)
        return FieldDecision(name, Action.WAITING, local=local, remote=remote)
    if base is None:
        # first sight of this field on this link: the vendor's value is the truth
        return _take_remote(name, local, remote, ctx, first=True)
    if base.get("unseen"):
        # a field we cannot write, which the vendor set itself when we created the ticket
        # (``activation``): its first value read is the vendor's choice, not an edit
        return FieldDecision(
            name, Action.AGREE, local=local, remote=remote, base=_base(local, remote)
        )
    # ``pending_push``: the vendor never took our value (a create's second call was lost,
    # or a conflict won locally is not pushed yet)
    local_changed = local != base.get("local") or bool(base.get("pending_push"))
    remote_changed = not same_vendor_value(remote, base.get("remote"))
    if not local_changed and not remote_changed:
        # untouched on both sides
        return FieldDecision(name, Action.NOOP)
    if local_changed and not remote_changed:
        # changed locally only
        return _push_local(name, local, remote, ctx)
    if remote_changed and not local_changed:
        # changed at the vendor only
        return _take_remote(name, local, remote, ctx)
    # changed on both sides
    try:
        if ctx.fmap.holds(local, remote):
            # ... to the same value: they agree
            return FieldDecision(
                name, Action.AGREE, local=local, remote=remote, base=_base(local, remote)
            )
    except Unmapped as exc:
        return FieldDecision(name, Action.ERROR, error=str(exc), was_local=local)
    return _conflict(name, base, local, remote, ctx)


def _push_local(
    name: str, local: str | None, remote: str | None, ctx: FieldContext
) -> FieldDecision:
    try:
        value = ctx.fmap.to_vendor(local)
    except Unmapped as exc:
        return FieldDecision(name, Action.ERROR, error=str(exc), was_local=local)
    if ctx.fmap.holds(local, remote):
        # a lossy map: the new local value maps to what the vendor already holds
        return FieldDecision(
            name, Action.AGREE, local=local, remote=remote, base=_base(local, remote)
        )
    if not ctx.writable:
        return FieldDecision(name, Action.UNWRITABLE, local=local, remote=remote)
    return FieldDecision(
        name, Action.PUSH, local=local, remote=value, base=_base(local, value), was_remote=remote
    )


def _take_remote(
    name: str, local: str | None, remote: str | None, ctx: FieldContext, *, first: bool = False
) -> FieldDecision:
    try:
        value = ctx.fmap.to_canonical(remote, local)
    except Unmapped as exc:
        return FieldDecision(name, Action.ERROR, error=str(exc), was_remote=remote)
    if value == local:
        return FieldDecision(
            name, Action.AGREE, local=local, remote=remote, base=_base(local, remote)
        )
    return FieldDecision(
        name, Action.PULL, local=value, remote=remote, base=_base(value, remote), was_local=local
    )


def _conflict(
    name: str, base: Mapping[str, Any], local: str | None, remote: str | None, ctx: FieldContext
) -> FieldDecision:
    winner = _winner(ctx)
    common: dict[str, Any] = {"was_local": local, "was_remote": remote}
    if winner == "manual":
        return FieldDecision(name, Action.MANUAL, local=local, remote=remote, **common)
    if winner == "local":
        if not ctx.writable:
            # the local value stays, but the vendor cannot take it: note its value as seen,
            # so the local change waits as unwritable instead of conflicting again
            return FieldDecision(
                name,
                Action.UNWRITABLE,
                local=local,
                remote=remote,
                base=_base(base.get("local"), remote),
                **common,
            )
        value = ctx.fmap.to_vendor(local)  # mapped above: cannot raise here
        # Until the vendor takes our value, the base notes the vendor's value as seen and
        # marks the local side as still to send. Keeping the old base instead would let the
        # push (which merges against the base) find a lossy map's local value equal to the
        # old vendor value and send nothing, and the vendor's value would come back later.
        unsent = {**_base(base.get("local"), remote), "pending_push": True}
        return FieldDecision(
            name,
            Action.CONFLICT,
            local=local,
            remote=value,
            base=_base(local, value),
            winner="local",
            unsent=unsent,
            **common,
        )
    try:
        canonical = ctx.fmap.to_canonical(remote, local)
    except Unmapped as exc:
        return FieldDecision(name, Action.ERROR, error=str(exc), **common)
    return FieldDecision(
        name,
        Action.CONFLICT,
        local=canonical,
        remote=remote,
        base=_base(canonical, remote),
        winner="remote",
        **common,
    )


def _winner(ctx: FieldContext) -> str:
    """Which side a conflict goes to under the field's policy."""
    if ctx.policy in ("local", "remote", "manual"):
        return ctx.policy
    if ctx.remote_time is None or ctx.local_time is None or ctx.remote_time == ctx.local_time:
        # no vendor modified time (or a tie): the order cannot be known (docs/architecture.md §7.2)
        return ctx.tie_break
    return "local" if ctx.local_time > ctx.remote_time else "remote"


def _base(local: str | None, remote: str | None) -> dict[str, Any]:
    return {"local": local, "remote": remote}


@dataclass
class TicketMerge:
    """The decisions for every synced field of one ticket."""

    decisions: list[FieldDecision] = field(default_factory=list)

    def of(self, *actions: Action) -> list[FieldDecision]:
        return [d for d in self.decisions if d.action in actions]

    @property
    def pushes(self) -> dict[str, str | None]:
        """Vendor values to send, by field."""
        return {d.field: d.remote for d in self.decisions if d.pushes}

    @property
    def pulls(self) -> dict[str, str | None]:
        """Canonical values to write into the mirror, by field."""
        return {d.field: d.local for d in self.decisions if d.pulls}

    @property
    def changes_base(self) -> bool:
        return any(d.base is not None for d in self.decisions)

    def new_base(self, base: Mapping[str, Any], *, pushed: bool = True) -> dict[str, Any]:
        """The link's base once carried out (``pushed``: the vendor took our pushes)."""
        result = {k: dict(v) for k, v in base.items()}
        for d in self.decisions:
            if d.base is not None and (pushed or not d.pushes):
                result[d.field] = d.base
            elif not pushed and d.unsent is not None:
                result[d.field] = d.unsent
        return result


def merge_ticket(
    base: Mapping[str, Any],
    local: Mapping[str, str | None],
    remote: Mapping[str, str | None],
    contexts: Mapping[str, FieldContext],
) -> TicketMerge:
    """Merge every field in ``contexts`` that the vendor reports in ``remote``."""
    merge = TicketMerge()
    for name, ctx in contexts.items():
        if name not in remote:
            continue
        merge.decisions.append(merge_field(base.get(name), local.get(name), remote[name], ctx))
    return merge


# -- rules beside the table: they settle the base the table is run against -------------


def remote_changes(
    base: Mapping[str, Any], remote: Mapping[str, str | None]
) -> dict[str, str | None]:
    """The vendor values of fields with a base entry that differ from the base's."""
    return {
        name: value
        for name, value in remote.items()
        if isinstance(base.get(name), dict)
        and not same_vendor_value(value, base[name].get("remote"))
    }


def late_writes(
    base: Mapping[str, Any],
    remote: Mapping[str, str | None],
    sent: Mapping[str, Sequence[str | None]],
) -> dict[str, str | None]:
    """The vendor's changes that are late writes of ours, by field.

    ``sent``: the values updates of superseded lease generations sent, by field. A vendor
    value that differs from the base and equals one of them is a request a paused holder
    sent before the takeover and the vendor applied since, not an agent's edit.
    """
    return {
        name: value
        for name, value in remote_changes(base, remote).items()
        if any(same_vendor_value(value, old) for old in sent.get(name, ()))
    }


def without_late_writes(base: Mapping[str, Any], late: Mapping[str, str | None]) -> dict[str, Any]:
    """``base`` with each late write taken as the vendor's value and marked ``pending_push``:
    the table then pushes the mirror's value again instead of pulling the stale one."""
    result = dict(base)
    for name, value in late.items():
        result[name] = {**result[name], "remote": value, "pending_push": True}
    return result


@dataclass(frozen=True)
class Activation:
    """The base a create intent takes when it finds its ticket at the vendor.

    ``pending``: some field did not land and is marked ``pending_push``; the ticket must
    be pushed again.
    """

    base: dict[str, Any]
    pending: bool


def activation(
    base: Mapping[str, Any],
    remote: Mapping[str, str | None],
    writable: Collection[str],
    followups: Collection[str],
) -> Activation:
    """Settle each field of a create's base against the vendor's values after the create.

    ``base`` holds, per field, what we sent (``remote``) and the mirror's value
    (``local``). Where the vendor holds another value than we sent, either our value did
    not land or someone edited the ticket since:

    - a field the vendor cannot write that its reply does not report (ProProfs' status of
      a new ticket): marked ``unseen``, so the first value read is taken as the vendor's
      choice and becomes the base, instead of being pulled over the mirror's value as if
      an agent had edited it;
    - same value: the entry stays;
    - a field the vendor cannot write (not in ``writable``): the vendor's value (we cannot
      have set it);
    - a field the adapter sets in a second call of the create (``followups``: Kapture's
      sub-status, Sirportly's first message): taken as not landed, the vendor's value with
      ``pending_push``, so the next merge sends the mirror's value;
    - any other difference is an edit at the vendor: the entry keeps what we sent, and the
      next merge pulls it (or settles a conflict).
    """
    pending = False
    result: dict[str, Any] = {}
    for name, entry in base.items():
        vendor = remote.get(name, entry.get("remote"))
        if name not in remote and name not in writable:
            result[name] = {**entry, "unseen": True}
        elif same_vendor_value(vendor, entry.get("remote")):
            result[name] = entry
        elif name not in writable:
            result[name] = {**entry, "remote": vendor}
        elif name in followups:
            result[name] = {**entry, "remote": vendor, "pending_push": True}
            pending = True
        else:
            result[name] = entry
    return Activation(result, pending)


def agrees_with_base(base: Mapping[str, Any], remote: Mapping[str, str | None]) -> bool:
    """True when every vendor value is the one the base last agreed on.

    The push shortcut: a fresh read before an update (``fetch_before_update``) that agrees
    with the base has nothing to merge in, so the push goes ahead on the base alone.
    """
    return all(
        isinstance(base.get(name), dict) and same_vendor_value(value, base[name].get("remote"))
        for name, value in remote.items()
    )
