"""The terminal progress line: shown for long pulls only, ended with a newline."""

from __future__ import annotations

import io

from sync.progress import SHOW_AFTER_PAGES, TerminalProgress, for_terminal


def test_short_pulls_print_nothing():
    out = io.StringIO()
    progress = TerminalProgress(out)
    progress("zoho", 1, 100)
    progress.done()
    assert out.getvalue() == ""


def test_long_pulls_overwrite_one_line():
    out = io.StringIO()
    progress = TerminalProgress(out)
    for page in range(1, SHOW_AFTER_PAGES + 2):
        progress("zoho", page, page * 100)
    progress.done()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert f"zoho: {SHOW_AFTER_PAGES + 1:,} pages, {(SHOW_AFTER_PAGES + 1) * 100:,} tickets" in text


def test_not_a_terminal_means_no_progress(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert for_terminal() is None


def test_systemd_means_no_progress(monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    assert for_terminal() is None
