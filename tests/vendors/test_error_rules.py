"""Vendors' body-level error rules are data tables, read by one function."""

from __future__ import annotations

import pytest

from sync.errors import (
    AuthRejected,
    ItemError,
    NotFound,
    ProtocolError,
    RateLimited,
    Retriable,
    VendorError,
)
from sync.vendors.errors import ErrorRule, classify, vendor_error
from sync.vendors.kapture.errors import ERRORS as KAPTURE
from sync.vendors.proprofs.errors import ERRORS as PROPROFS
from sync.vendors.sirportly.errors import ERRORS as SIRPORTLY
from sync.vendors.zoho_desk.errors import ERRORS as ZOHO

TABLES = {"kapture": KAPTURE, "proprofs": PROPROFS, "sirportly": SIRPORTLY, "zoho_desk": ZOHO}


@pytest.mark.parametrize("vendor", list(TABLES))
def test_every_table_ends_with_a_catch_all(vendor: str) -> None:
    last = TABLES[vendor][-1]
    assert last == ErrorRule(ItemError)
    assert classify(TABLES[vendor], "anything at all", 200, "SOME_CODE") is last


def test_a_row_applies_only_when_every_condition_holds() -> None:
    rules = (
        ErrorRule(AuthRejected, statuses=frozenset({401}), codes=frozenset({"EXPIRED", None})),
        ErrorRule(ProtocolError, words=r"list", reads=True),
        ErrorRule(ItemError),
    )
    assert classify(rules, "", 401, None).error is AuthRejected
    assert classify(rules, "", 401, "OTHER").error is ItemError
    assert classify(rules, "", 403, "EXPIRED").error is ItemError
    assert classify(rules, "bad LIST filter", 400, reads=True).error is ProtocolError
    assert classify(rules, "bad list filter", 400, reads=False).error is ItemError
    with pytest.raises(LookupError):
        classify(rules[:1], "", 500)


def test_vendor_error_formats_the_hint_and_keeps_the_vendors_words() -> None:
    error = vendor_error(
        KAPTURE,
        "k: get -> HTTP 200: Kapture says 'Invalid Auth Key'",
        connection="k",
        status=200,
        said="Invalid Auth Key",
        credential="read_token",
    )
    assert type(error) is AuthRejected
    assert "connections.k.credentials.read_token" in str(error)
    assert (error.connection, error.status, error.vendor_message) == ("k", 200, "Invalid Auth Key")


def test_retry_after_goes_to_retriable_errors_only() -> None:
    limited = vendor_error(
        PROPROFS, "p", connection="p", status=200, said="Rate limit exceeded", retry_after=7.0
    )
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0
    missing = vendor_error(PROPROFS, "p", connection="p", status=200, said="Ticket not found")
    assert type(missing) is NotFound


@pytest.mark.parametrize(
    ("table", "said", "status", "code", "reads", "kind"),
    [
        (KAPTURE, "ServerFailure", 200, None, False, Retriable),
        (KAPTURE, "No Data found for ticket", 200, None, False, NotFound),
        (KAPTURE, "title is missing", 200, None, False, ItemError),
        (KAPTURE, "whatever", 403, None, False, AuthRejected),
        (PROPROFS, "Unable to authenticate request", 200, None, False, AuthRejected),
        (PROPROFS, "invalid filter", 400, None, True, ProtocolError),
        (PROPROFS, "something", 404, None, False, NotFound),
        (SIRPORTLY, "", 403, None, False, AuthRejected),
        (SIRPORTLY, "", 404, None, False, NotFound),
        (SIRPORTLY, "", 422, None, False, ItemError),
        (ZOHO, "", 429, "TOO_MANY_REQUESTS", False, RateLimited),
        (ZOHO, "", 401, None, False, AuthRejected),
        (ZOHO, "", 400, "OAUTH_ORG_MISMATCH", False, AuthRejected),
        (ZOHO, "", 403, "FORBIDDEN", False, ItemError),
        (ZOHO, "", 403, "SOMETHING_ELSE", False, AuthRejected),
        (ZOHO, "", 404, "URL_NOT_FOUND", False, NotFound),
    ],
)
def test_each_vendors_rows(
    table: tuple[ErrorRule, ...],
    said: str,
    status: int,
    code: str | None,
    reads: bool,
    kind: type[VendorError],
) -> None:
    assert classify(table, said, status, code, reads).error is kind
