"""sync.redact: the forms a secret takes, credential shapes, and the logging filter."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy.engine import make_url

from sync import redact
from sync.redact import RedactingFilter, Redactor

SECRET = 'Sentinel/s3cr3t+"key" 42'


def test_secret_masked_in_every_wire_form() -> None:
    redactor = Redactor([SECRET])
    forms = [
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        json.dumps(SECRET)[1:-1],
    ]
    for form in forms:
        assert redactor.redact(f"before {form} after") == "before *** after", form


def test_longest_secret_first() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.redact("x abcdefgh y abcd z") == "x *** y *** z"


def test_empty_secret_ignored_short_secret_kept() -> None:
    redactor = Redactor(["", "k9z"])
    assert redactor.redact("plain text") == "plain text"
    assert redactor.redact("id k9z") == "id ***"


def test_secrets_from_a_generator() -> None:
    redactor = Redactor(s for s in ["one-secret", "two-secret"])
    assert redactor.redact("one-secret two-secret") == "*** ***"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Zoho-oauthtoken 1000.ab.cd", "Authorization: ***"),
        ("{'Authorization': 'Basic dXNlcjpwYXNz'}", "{'Authorization': '***'}"),
        ("X-Auth-Secret: hunter2", "X-Auth-Secret: ***"),
        ("sent Zoho-oauthtoken 1000.ab.cd to", "sent Zoho-oauthtoken *** to"),
        ("got Bearer eyJ.abc-def_ghi now", "got Bearer *** now"),
        ("with Basic dXNlcjpwYXNz=", "with Basic ***"),
        ('{"token": "t-1", "id": 5}', '{"token": "***", "id": 5}'),
        ('{"refresh_token":"r\\"1"}', '{"refresh_token":"***"}'),
        (
            '{"access_token": "a", "client_secret": "c"}',
            '{"access_token": "***", "client_secret": "***"}',
        ),
        ('{"secret": "s", "status": "open"}', '{"secret": "***", "status": "open"}'),
        ("{'token': 'py-repr'}", "{'token': '***'}"),
        ("/api?authtoken=abc&page=2", "/api?authtoken=***&page=2"),
    ],
)
def test_credential_shapes_masked_without_knowing_the_secret(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


def test_repr_hides_secrets() -> None:
    assert SECRET not in repr(Redactor([SECRET]))


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter(Redactor([SECRET])))
    log = logging.getLogger("tests.redact.filter")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log, stream
    log.removeHandler(handler)


def test_filter_redacts_message_and_args(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    log.info("connecting with %s and %r", SECRET, {"key": SECRET})
    log.warning(f"inline {SECRET}")
    output = stream.getvalue()
    assert SECRET not in output
    assert "connecting with *** and" in output
    assert "inline ***" in output


def test_filter_redacts_traceback_and_stack(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    try:
        raise ValueError(f"vendor said {SECRET}")
    except ValueError:
        log.exception("request failed")
    log.info("where %s", SECRET, stack_info=True)
    output = stream.getvalue()
    assert "Traceback (most recent call last)" in output
    assert "ValueError: vendor said ***" in output
    assert "Stack (most recent call last)" in output
    assert SECRET not in output


def test_filter_survives_bad_format_args(logger: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = logger
    log.info("two %s %s", SECRET)
    assert SECRET not in stream.getvalue()
    assert "two %s %s" in stream.getvalue()


def test_install_filters_root_handlers_and_sets_current(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(redact, "_current", redact.current())

    redact.install(Redactor(["first-secret"]))
    redact.install(Redactor([SECRET]))
    logging.getLogger("tests.redact.install").warning("leak %s", SECRET)

    assert redact.current().redact(SECRET) == "***"
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    assert stream.getvalue() == "leak ***\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"access_token": "1000.abcdef', '{"access_token": "***'),
        ('{"access_token":"1000.ab\\', '{"access_token":"***'),
        (
            'reply cut: {"refresh_token": "1000.xyz (truncated)',
            'reply cut: {"refresh_token": "*** (truncated)',
        ),
        ("{'access_token': '1000.abc", "{'access_token': '***"),
        ('{"access_token": "a", "x": "b', '{"access_token": "***", "x": "b'),
    ],
)
def test_a_token_value_cut_before_its_closing_quote_is_masked(text: str, expected: str) -> None:
    assert Redactor().redact(text) == expected


def test_with_secrets_masks_old_and_new() -> None:
    both = Redactor(["old-secret-1"]).with_secrets(["new-secret-2"])
    assert both.redact("old-secret-1 new-secret-2") == "*** ***"


def test_remember_adds_a_minted_secret_to_current(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_current", Redactor(["configured-1"]))
    monkeypatch.setattr(redact, "_minted", redact.deque(maxlen=2))
    redact.remember("minted-a")
    assert redact.current().redact("configured-1 minted-a") == "*** ***"
    redact.remember("minted-b")
    redact.remember("minted-c")  # the oldest minted secret is dropped, configured ones kept
    assert redact.current().redact("configured-1 minted-a minted-b minted-c") == (
        "*** minted-a *** ***"
    )


def test_url_secrets_and_redact_url() -> None:
    url = make_url("postgresql://u:pw-1@h/db?sslmode=require&password=pw-2&sslpassword=pw-3")
    assert redact.url_secrets(url) == ["pw-1", "pw-2", "pw-3"]
    assert redact.redact_url(url) == (
        "postgresql://u:***@h/db?password=***&sslmode=require&sslpassword=***"
    )
