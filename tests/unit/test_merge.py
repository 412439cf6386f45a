"""The three-way merge as a pure function: one test per branch of the decision table.

``base`` is ``{"local": canonical, "remote": vendor}``; ``local`` is canonical, ``remote``
a vendor value. The status map is lossy (``pending`` and ``on_hold`` both map to
``Pending``), as in ``engine_helpers.STATUS``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync.engine.mapping import FieldMap
from sync.engine.merge import (
    Action,
    Activation,
    FieldContext,
    FieldDecision,
    activation,
    agrees_with_base,
    late_writes,
    merge_field,
    merge_ticket,
    remote_changes,
    without_late_writes,
)
from tests.unit.engine_helpers import PRIORITY, STATUS

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STATUS_MAP = FieldMap("status", STATUS)


def ctx(fmap: FieldMap = STATUS_MAP, **kw: Any) -> FieldContext:
    return FieldContext(fmap=fmap, **kw)


def base(local: str | None, remote: str | None, **extra: object) -> dict[str, object]:
    return {"local": local, "remote": remote, **extra}


def test_first_sight_takes_the_remote_value() -> None:
    # first sight (no base): the vendor's value is the truth
    d = merge_field(None, "open", "Closed", ctx())
    assert d.action is Action.PULL
    assert (d.local, d.remote, d.base) == ("resolved", "Closed", base("resolved", "Closed"))
    assert d.was_local == "open"


def test_first_sight_that_already_agrees_only_records_the_base() -> None:
    # first sight, local already maps to the vendor's value: agree, keep the local value
    d = merge_field(None, "on_hold", "Pending", ctx())
    assert d.action is Action.AGREE
    assert d.base == base("on_hold", "Pending")


def test_untouched_on_both_sides_is_a_noop() -> None:
    # untouched: neither side moved from the base
    d = merge_field(base("open", "Open"), "open", "Open", ctx())
    assert d.action is Action.NOOP
    assert d.base is None


def test_untouched_compares_vendor_values_loosely() -> None:
    # untouched: the vendor re-spelling its own value (case, blanks) is no change
    d = merge_field(base("open", "Open"), "open", " OPEN ", ctx())
    assert d.action is Action.NOOP


def test_local_only_change_is_pushed() -> None:
    # local only -> push, the vendor value to send is the mapped local value
    d = merge_field(base("open", "Open"), "closed", "Open", ctx())
    assert d.action is Action.PUSH
    assert d.pushes and not d.pulls
    assert (d.local, d.remote) == ("closed", "Closed")
    assert d.base == base("closed", "Closed")
    assert d.was_remote == "Open"


def test_local_only_change_the_vendor_cannot_write_waits_as_unwritable() -> None:
    # local only, but the vendor cannot write the field -> unwritable, base stays
    d = merge_field(base("open", "Open"), "closed", "Open", ctx(writable=False))
    assert d.action is Action.UNWRITABLE
    assert not d.pushes
    assert d.base is None


def test_local_only_change_within_a_lossy_map_agrees() -> None:
    # local only, lossy map: the new value maps to what the vendor holds -> agree, no push
    d = merge_field(base("pending", "Pending"), "on_hold", "Pending", ctx())
    assert d.action is Action.AGREE
    assert not d.pushes
    assert d.base == base("on_hold", "Pending")


def test_remote_only_change_is_pulled() -> None:
    # remote only -> pull, mapped to the canonical value
    d = merge_field(base("open", "Open"), "open", "Closed", ctx())
    assert d.action is Action.PULL
    assert d.pulls and not d.pushes
    assert (d.local, d.remote) == ("resolved", "Closed")
    assert d.base == base("resolved", "Closed")
    assert d.was_local == "open"


def test_remote_only_change_pulls_as_the_first_canonical_value_listed() -> None:
    # remote only, many-to-one: with no local value mapping there, the first one listed
    d = merge_field(base("open", "Open"), "open", "Pending", ctx())
    assert d.action is Action.PULL
    assert d.local == "pending"


def test_remote_only_change_many_to_one_keeps_a_local_value_that_maps_there() -> None:
    # remote only, many-to-one: local 'on_hold' already maps to 'Pending' -> keep it
    d = merge_field(base("on_hold", "Open"), "on_hold", "Pending", ctx())
    assert d.action is Action.AGREE
    assert d.local == "on_hold"
    assert d.base == base("on_hold", "Pending")


def test_both_changed_to_the_same_value_agree() -> None:
    # both changed, equal after mapping -> agree, only the base moves
    d = merge_field(base("open", "Open"), "closed", "CLOSED", ctx())
    assert d.action is Action.AGREE
    assert d.base == base("closed", "CLOSED")
    assert not d.pushes and not d.pulls


def test_both_changed_to_the_same_value_through_a_lossy_map_agree() -> None:
    # both changed, local 'on_hold' and remote 'Pending': equal after mapping -> agree
    d = merge_field(base("open", "Open"), "on_hold", "Pending", ctx())
    assert d.action is Action.AGREE
    assert d.local == "on_hold"


QUEUES = FieldMap(
    "queue",
    {"support": "3", "second_line": "3/4", "billing": "5/5"},
    broader=lambda v: v.split("/")[0] if "/" in v else None,
)


def test_a_department_entry_holds_any_team_of_it() -> None:
    # local moved to 'support' (department 3), the vendor holds 3/2: already there, no push
    d = merge_field(base("billing", "5/5"), "support", "3/2", ctx(QUEUES))
    assert d.action is Action.AGREE and not d.pushes
    # both changed: local 'support', the vendor moved to 3/2 -> they agree
    d = merge_field(base("billing", "5/5"), "support", "3/2", ctx(QUEUES, policy="remote"))
    assert d.action is Action.AGREE
    # an exact entry wins: 3/4 is 'second_line', not 'support'
    d = merge_field(base("second_line", "3/4"), "support", "3/4", ctx(QUEUES))
    assert d.action is Action.PUSH and d.remote == "3"


def _conflict(**kw: Any) -> FieldDecision:
    return merge_field(base("open", "Open"), "closed", "Pending", ctx(**kw))


def test_conflict_newest_local_newer_wins_locally() -> None:
    # both differ, policy newest, local newer -> local wins, pushed
    d = _conflict(policy="newest", local_time=T0 + timedelta(seconds=1), remote_time=T0)
    assert (d.action, d.winner) == (Action.CONFLICT, "local")
    assert d.pushes
    assert (d.local, d.remote, d.base) == ("closed", "Closed", base("closed", "Closed"))
    assert (d.was_local, d.was_remote) == ("closed", "Pending")


def test_conflict_newest_remote_newer_wins_remotely() -> None:
    # both differ, policy newest, remote newer -> remote wins, pulled
    d = _conflict(policy="newest", local_time=T0, remote_time=T0 + timedelta(seconds=1))
    assert (d.action, d.winner) == (Action.CONFLICT, "remote")
    assert d.pulls
    assert (d.local, d.remote, d.base) == ("pending", "Pending", base("pending", "Pending"))
    assert (d.was_local, d.was_remote) == ("closed", "Pending")


@pytest.mark.parametrize("tie_break", ["local", "remote"])
def test_conflict_newest_without_a_remote_time_goes_to_the_tie_break(tie_break: str) -> None:
    # both differ, policy newest, no vendor modified time -> tie_break decides
    # (docs/architecture.md §7.2)
    d = _conflict(policy="newest", local_time=T0, remote_time=None, tie_break=tie_break)
    assert (d.action, d.winner) == (Action.CONFLICT, tie_break)


@pytest.mark.parametrize("tie_break", ["local", "remote"])
def test_conflict_newest_with_equal_times_goes_to_the_tie_break(tie_break: str) -> None:
    # both differ, policy newest, same instant: the order cannot be known -> tie_break
    d = _conflict(policy="newest", local_time=T0, remote_time=T0, tie_break=tie_break)
    assert d.winner == tie_break


def test_conflict_policy_local() -> None:
    # both differ, policy local -> local wins whatever the times say
    d = _conflict(policy="local", local_time=T0, remote_time=T0 + timedelta(days=1))
    assert (d.action, d.winner, d.remote) == (Action.CONFLICT, "local", "Closed")


def test_conflict_policy_remote() -> None:
    # both differ, policy remote -> remote wins whatever the times say
    d = _conflict(policy="remote", local_time=T0 + timedelta(days=1), remote_time=T0)
    assert (d.action, d.winner, d.local) == (Action.CONFLICT, "remote", "pending")


def test_conflict_policy_manual_waits_for_the_operator() -> None:
    # both differ, policy manual -> left for the operator, nothing moves
    d = _conflict(policy="manual")
    assert d.action is Action.MANUAL
    assert d.base is None
    assert not d.pushes and not d.pulls
    assert (d.was_local, d.was_remote) == ("closed", "Pending")


def test_pending_manual_conflict_waits() -> None:
    # an open manual conflict on the field: waiting, whatever the values
    d = merge_field(base("open", "Open", conflict=7), "closed", "Pending", ctx())
    assert d.action is Action.WAITING
    assert d.base is None and not d.pushes and not d.pulls


def test_unmapped_local_value_on_a_local_change_is_an_error() -> None:
    # local only, unmapped local value -> error, never pushed
    d = merge_field(base("open", "Open"), "closd", "Open", ctx())
    assert d.action is Action.ERROR
    assert "closd" in (d.error or "") and not d.pushes
    assert d.was_local == "closd"


def test_unmapped_local_value_on_a_both_sides_change_is_an_error() -> None:
    # both changed, unmapped local value -> error, neither side written
    d = merge_field(base("open", "Open"), "closd", "Closed", ctx())
    assert d.action is Action.ERROR
    assert not d.pushes and not d.pulls


def test_unmapped_remote_value_on_a_remote_change_is_an_error() -> None:
    # remote only, unmapped vendor value -> error, never written into the mirror
    d = merge_field(base("open", "Open"), "open", "Escalated", ctx())
    assert d.action is Action.ERROR
    assert "Escalated" in (d.error or "") and not d.pulls
    assert d.was_remote == "Escalated"


def test_unmapped_remote_value_on_first_sight_is_an_error() -> None:
    # first sight, unmapped vendor value -> error, never written into the mirror
    d = merge_field(None, "open", "Escalated", ctx())
    assert d.action is Action.ERROR


def test_unmapped_remote_value_winning_a_conflict_is_an_error() -> None:
    # both differ, remote wins but its value has no map entry -> error, not written
    d = merge_field(base("open", "Open"), "closed", "Escalated", ctx(policy="remote"))
    assert d.action is Action.ERROR
    assert not d.pulls


def test_conflict_won_locally_on_an_unwritable_field() -> None:
    # both differ, local wins, vendor cannot write -> unwritable; the base notes the remote
    # value as seen, so the next merge is a local-only change (unwritable), not a conflict
    d = _conflict(policy="local", writable=False)
    assert d.action is Action.UNWRITABLE
    assert not d.pushes and not d.pulls
    assert d.base == base("open", "Pending")
    again = merge_field(d.base, "closed", "Pending", ctx(policy="local", writable=False))
    assert again.action is Action.UNWRITABLE and again.base is None


def test_pass_through_field_compares_raw_values() -> None:
    # an unmapped (pass-through) field: local only -> push the value as is
    fmap = FieldMap("title")
    d = merge_field(base("A", "A"), "B", "A", ctx(fmap=fmap))
    assert (d.action, d.remote) == (Action.PUSH, "B")


def test_none_is_a_value_like_any_other() -> None:
    # local cleared the field (None) -> push None; remote cleared -> pull None
    fmap = FieldMap("title")
    assert merge_field(base("A", "A"), None, "A", ctx(fmap=fmap)).action is Action.PUSH
    d = merge_field(base("A", "A"), "A", None, ctx(fmap=fmap))
    assert (d.action, d.local) == (Action.PULL, None)


def test_merge_ticket_merges_every_field_the_vendor_reports() -> None:
    contexts = {
        "status": ctx(),
        "priority": ctx(fmap=FieldMap("priority", PRIORITY)),
        "title": ctx(fmap=FieldMap("title")),
    }
    merge = merge_ticket(
        {
            "status": base("open", "Open"),
            "priority": base("normal", "P3"),
            "title": base("A", "A"),
        },
        {"status": "closed", "priority": "normal", "title": "A"},
        # the vendor does not report the title: it is left out of the merge
        {"status": "Open", "priority": "P1"},
        contexts,
    )
    assert [d.field for d in merge.decisions] == ["status", "priority"]
    assert merge.pushes == {"status": "Closed"}
    assert merge.pulls == {"priority": "urgent"}
    assert merge.changes_base
    old = {"status": base("open", "Open"), "priority": base("normal", "P3")}
    assert merge.new_base(old) == {
        "status": base("closed", "Closed"),
        "priority": base("urgent", "P1"),
    }
    # before the vendor took the push, only the pulled field's base moves
    assert merge.new_base(old, pushed=False) == {
        "status": base("open", "Open"),
        "priority": base("urgent", "P1"),
    }


def test_merge_ticket_of_an_untouched_ticket_changes_nothing() -> None:
    merge = merge_ticket(
        {"status": base("open", "Open")}, {"status": "open"}, {"status": "Open"}, {"status": ctx()}
    )
    assert merge.of(Action.NOOP) == merge.decisions
    assert not merge.pushes and not merge.pulls and not merge.changes_base


def test_conflict_won_locally_keeps_an_unsent_base_until_pushed() -> None:
    # both differ, local wins: until the vendor takes the value, the base notes the vendor's
    # value as seen and marks the local side as still to send
    d = merge_field(base("pending", "Pending"), "on_hold", "Closed", ctx(policy="local"))
    assert (d.action, d.winner, d.remote) == (Action.CONFLICT, "local", "Pending")
    assert d.unsent == base("pending", "Closed", pending_push=True)
    # the push merges against that base: 'on_hold' still goes out, although it maps onto the
    # vendor value of the old base ('Pending')
    again = merge_field(d.unsent, "on_hold", "Closed", ctx(policy="local"))
    assert (again.action, again.remote) == (Action.PUSH, "Pending")
    assert again.base == base("on_hold", "Pending")


def test_pending_push_counts_as_a_local_change() -> None:
    # pending push, vendor unchanged -> push the local value even though it equals the base's
    d = merge_field(base("open", "Closed", pending_push=True), "open", "Closed", ctx())
    assert (d.action, d.remote, d.base) == (Action.PUSH, "Open", base("open", "Open"))
    # pending push, vendor already holds the local value -> agree, the mark goes
    d = merge_field(base("open", "Open", pending_push=True), "open", "Open", ctx())
    assert (d.action, d.base) == (Action.AGREE, base("open", "Open"))
    # pending push, vendor changed again -> a new conflict, settled by policy
    d = merge_field(base("open", "Closed", pending_push=True), "open", "Pending", ctx())
    assert d.action is Action.CONFLICT


def test_new_base_keeps_the_unsent_entry_until_pushed() -> None:
    d = merge_field(base("pending", "Pending"), "on_hold", "Closed", ctx(policy="local"))
    merge = merge_ticket(
        {"status": base("pending", "Pending")},
        {"status": "on_hold"},
        {"status": "Closed"},
        {"status": ctx(policy="local")},
    )
    assert merge.decisions == [d]
    old = {"status": base("pending", "Pending")}
    assert merge.new_base(old, pushed=False) == {"status": d.unsent}
    assert merge.new_base(old) == {"status": base("on_hold", "Pending")}


# -- late writes of a superseded lease generation ------------------------------------------


def test_remote_changes_are_fields_with_a_base_whose_vendor_value_moved() -> None:
    b = {"status": base("open", "Open"), "priority": base("normal", "P3")}
    remote = {"status": " OPEN ", "priority": "P1", "queue": "billing"}
    # re-spelt status: no change; queue has no base entry: not judged here
    assert remote_changes(b, remote) == {"priority": "P1"}


def test_a_change_equal_to_a_superseded_send_is_a_late_write() -> None:
    # the vendor moved to a value an older generation sent: ours, arriving late
    b = {"status": base("open", "Open")}
    assert late_writes(b, {"status": "Closed"}, {"status": ["Pending", "closed"]}) == {
        "status": "Closed"
    }


def test_a_change_no_superseded_send_holds_is_an_edit() -> None:
    # the vendor moved to a value no older generation sent: an agent's edit
    b = {"status": base("open", "Open")}
    assert late_writes(b, {"status": "Closed"}, {"status": ["Pending"]}) == {}
    assert late_writes(b, {"status": "Closed"}, {}) == {}


def test_an_unchanged_field_is_never_a_late_write() -> None:
    # the vendor still holds the base's value: nothing arrived, whatever was sent once
    b = {"status": base("open", "Open")}
    assert late_writes(b, {"status": "Open"}, {"status": ["Open"]}) == {}


def test_a_late_write_is_pushed_over_not_pulled() -> None:
    # the mirror's value goes out again; without the rule the stale value would be pulled
    b = {"status": base("open", "Open")}
    late = late_writes(b, {"status": "Closed"}, {"status": ["Closed"]})
    fixed = without_late_writes(b, late)
    assert fixed == {"status": base("open", "Closed", pending_push=True)}
    assert b == {"status": base("open", "Open")}  # the input is left alone
    d = merge_field(fixed["status"], "open", "Closed", ctx())
    assert (d.action, d.remote) == (Action.PUSH, "Open")
    assert merge_field(b["status"], "open", "Closed", ctx()).action is Action.PULL


def test_a_late_write_under_a_newer_local_edit_sends_the_local_value() -> None:
    b = {"status": base("open", "Open")}
    fixed = without_late_writes(b, {"status": "Closed"})
    d = merge_field(fixed["status"], "pending", "Closed", ctx())
    assert (d.action, d.remote) == (Action.PUSH, "Pending")


# -- create activation ----------------------------------------------------------------------

FOLLOWUPS = frozenset({"status"})
WRITES = frozenset({"status", "priority", "title"})


def test_activation_keeps_what_landed() -> None:
    b = {"status": base("open", "Open"), "title": base("A", "A")}
    assert activation(b, {"status": "open ", "title": "A"}, WRITES, FOLLOWUPS) == Activation(
        b, pending=False
    )


def test_activation_keeps_a_field_the_vendor_did_not_report() -> None:
    b = {"status": base("open", "Open")}
    assert activation(b, {}, WRITES, FOLLOWUPS) == Activation(b, pending=False)


def test_activation_takes_the_vendors_value_of_an_unwritable_field() -> None:
    # we cannot have set it: the vendor's value is the base's
    b = {"queue": base("billing", "billing")}
    got = activation(b, {"queue": "triage"}, WRITES, FOLLOWUPS)
    assert got == Activation({"queue": base("billing", "triage")}, pending=False)


def test_activation_adopts_the_first_read_of_an_unwritable_field_the_reply_left_out() -> None:
    # ProProfs creates with a status of its own choosing and does not say which: the first
    # pull must not take it for an agent's edit and overwrite the mirror's status with it
    b = {"queue": base("closed", "closed")}
    got = activation(b, {}, WRITES, FOLLOWUPS)
    assert got == Activation({"queue": base("closed", "closed", unseen=True)}, pending=False)
    qmap = FieldMap("queue", None)
    d = merge_field(got.base["queue"], "closed", "open", ctx(qmap, writable=False))
    assert (d.action, d.base) == (Action.AGREE, base("closed", "open"))
    # from then on the vendor's changes are pulled as usual
    d = merge_field(d.base, "closed", "pending", ctx(qmap, writable=False))
    assert (d.action, d.local) == (Action.PULL, "pending")


def test_activation_marks_a_followup_that_did_not_land_as_still_to_push() -> None:
    # the create's second call was lost: the vendor's value is noted, ours goes out again
    b = {"status": base("pending", "Pending")}
    got = activation(b, {"status": "Open"}, WRITES, FOLLOWUPS)
    assert got == Activation({"status": base("pending", "Open", pending_push=True)}, True)
    d = merge_field(got.base["status"], "pending", "Open", ctx())
    assert (d.action, d.remote) == (Action.PUSH, "Pending")


def test_activation_keeps_our_value_where_the_vendor_was_edited_since() -> None:
    # a writable field the create itself sets: a difference is an edit, the merge pulls it
    b = {"priority": base("normal", "P3")}
    got = activation(b, {"priority": "P1"}, WRITES, FOLLOWUPS)
    assert got == Activation(b, pending=False)
    pmap = FieldMap("priority", PRIORITY)
    d = merge_field(got.base["priority"], "normal", "P1", ctx(pmap))
    assert (d.action, d.local) == (Action.PULL, "urgent")


# -- the fresh-read shortcut of a push ------------------------------------------------------


def test_a_fresh_read_equal_to_the_base_agrees() -> None:
    b = {"status": base("open", "Open"), "priority": base("normal", "P3")}
    assert agrees_with_base(b, {"status": " open", "priority": "P3"})
    assert agrees_with_base(b, {})


def test_a_fresh_read_with_a_vendor_change_does_not_agree() -> None:
    b = {"status": base("open", "Open"), "priority": base("normal", "P3")}
    assert not agrees_with_base(b, {"status": "Open", "priority": "P1"})


def test_a_fresh_read_with_a_field_the_base_lacks_does_not_agree() -> None:
    # a field never agreed on must go through the merge (first sight)
    assert not agrees_with_base({"status": base("open", "Open")}, {"queue": "billing"})
    assert not agrees_with_base({"queue": "billing"}, {"queue": "billing"})
