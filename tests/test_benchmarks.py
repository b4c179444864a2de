"""The benchmark suite's command line: records in the documented JSON schema (nothing timed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.__main__ import BENCHMARKS, main, meets

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.usefixtures("one_thread")
def test_quick_run_writes_records_in_the_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "out" / "bench.json"
    records = main(["--quick", "--only", "data", "--json", str(path)])
    assert json.loads(path.read_text()) == records
    assert {r["metric"] for r in records} >= {"shards_vs_memory", "shards_tokens_per_s"}
    for r in records:
        assert set(r) == {"benchmark", "metric", "value", "goal"}
        assert r["benchmark"] == "data" and isinstance(r["value"], float) and r["value"] > 0
        assert r["goal"] is None or isinstance(meets(r["value"], r["goal"]), bool)


def test_goals_compare_in_the_stated_direction() -> None:
    assert meets(0.95, ">= 0.95") and not meets(0.94, ">= 0.95")
    assert meets(1.1, "<= 1.1") and not meets(1.2, "<= 1.1")
    assert meets(7.9, "< 8") and not meets(8.0, "< 8")


def test_every_benchmark_is_registered_by_its_module_name() -> None:
    modules = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    modules -= {"__init__", "__main__", "common"}
    assert {fn.__module__.removeprefix("benchmarks.") for fn in BENCHMARKS.values()} == modules


def test_graph_backbones_benchmark_times_both_backbones_in_quick_mode() -> None:
    pytest.importorskip("lcmd_graph")
    records = {r["metric"]: r for r in main(["--quick", "--only", "graph"])}
    assert {"sbm/N16/dit/step_ms", "sbm/N16/graph_transformer/step_ms"} <= set(records)
    assert records["sbm/N16/step_speedup_vs_dit"]["value"] > 0
