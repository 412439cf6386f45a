"""The test folders are not packages, so pytest imports each test module by its file name:
two ``test_x.py`` in different folders make the second fail to collect ("import file
mismatch"), on a clean checkout only. This keeps every test module's name unique."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_name_is_unique() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
