"""Smoke test of the burst benchmark (``tests.benchmarks.burst``) at a small size."""

from __future__ import annotations

from tests.benchmarks.burst import MINIMUM, burst_benchmark, rows


async def test_burst_benchmark_measures_idle_runs_at_the_api_minimum() -> None:
    result = await burst_benchmark("zoho_desk", 150)
    assert result["import"]["pulled"] == 150 and result["burst_s"] <= 1.0
    assert result["idle 1"]["http_requests"] == result["idle 2"]["http_requests"] == 1
    assert result["changes"]["pulled"] == 100
    (row,) = rows([result])
    assert row[:3] == ["zoho_desk", "sqlite", 150] and row[6] == MINIMUM["zoho_desk"]
