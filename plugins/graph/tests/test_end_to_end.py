"""The graph plugin through the CLI: train, sample, eval on the tiny preset; user files."""

from __future__ import annotations

import functools
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import networkx as nx
import pytest
from lcmd_graph import plugin as entry_point
from PIL import Image

from lcmd_core.cli import main
from lcmd_core.plugins import Plugin, collect_plugins
from lcmd_core.plugins import get_plugin_manager as new_plugin_manager

pytestmark = pytest.mark.usefixtures("one_thread")


def plugin_manager():
    pm = new_plugin_manager(load_entrypoints=False)
    pm.register(entry_point, name="graph")
    return pm


@functools.cache
def graph_plugin() -> Plugin:
    return collect_plugins(plugin_manager())["graph"]


def lcmd(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args], pm=plugin_manager())
    return code, out.getvalue(), err.getvalue()


def test_registers_every_embedded_set_with_a_fitting_codec() -> None:
    plugin = graph_plugin()
    assert plugin.default_dataset == "planar" and "tiny" in plugin.presets
    for name in ("planar", "sbm", "sbm_spectre", "community_small", "grid"):
        info = plugin.dataset(name)
        items, labels = info.load("train")
        assert len(items) == 128 and labels is None and len(info.load("test")[0]) == 40
        codec = plugin.codec(info.default_codec, info.codec_options)
        assert codec.encode(items[:3]).shape == (3, codec.token_spec.seq_len)


def test_tiny_preset_trains_samples_and_evaluates(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = lcmd("train", "--plugin", "graph", "--data", "community_small",
                        "--preset", "tiny", "--out", run, "--max-steps", 30,
                        "--set", "sample.num_samples=8", "--no-progress")  # fmt: skip
    assert code == 0, err
    code, _, err = lcmd("sample", run, "--n", 4, "--steps", 5, "--out", tmp_path / "s",
                        "--no-progress")  # fmt: skip
    assert code == 0, err
    assert len(list((tmp_path / "s").glob("graph-*.graphml"))) == 4
    with Image.open(tmp_path / "s" / "grid.png") as grid:
        assert grid.size == (2 * 160, 2 * 160)
    code, out, err = lcmd("eval", run, "--n-samples", 8, "--json")
    assert code == 0, err
    metrics = json.loads(out)
    for key in ("mmd/degree", "mmd/degree_train", "mmd/degree_ratio", "mmd/clustering",
                "mmd/spectre", "vun/unique", "vun/novel", "vun/un"):  # fmt: skip
        assert key in metrics, key
    assert metrics["mmd/degree_train"] > 0 and 0 <= metrics["vun/un"] <= 1


def write_split(root: Path, split: str, graphs: list[nx.Graph]) -> None:
    (root / split).mkdir(parents=True)
    for i, graph in enumerate(graphs):
        nx.write_graphml(graph, root / split / f"g{i}.graphml")


def test_user_files_skip_unreadable_graphs_and_refuse_too_large_ones(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for split in ("train", "valid", "test"):
        write_split(data, split, [nx.cycle_graph(n) for n in range(3, 9)])
    (data / "train" / "broken.graphml").write_text("<graphml><graph>")
    (data / "train" / "loop.edgelist").write_text("0 1\n1 1\n")
    code, out, err = lcmd("prepare", "--plugin", "graph", "--data", "files",
                          "--data-root", data, "--out", tmp_path / "run",
                          "--set", "data.codec_options.max_nodes=8")  # fmt: skip
    assert code == 0, err
    assert "skipped 2 unreadable items of files/train" in out
    code, _, err = lcmd("prepare", "--plugin", "graph", "--data", "files",
                        "--data-root", data, "--out", tmp_path / "run2",
                        "--set", "data.codec_options.max_nodes=6")  # fmt: skip
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "more than max_nodes=6; raise data.codec_options.max_nodes" in err


def test_unknown_codec_option_is_a_one_line_error(tmp_path: Path) -> None:
    code, _, err = lcmd("prepare", "--plugin", "graph", "--data", "grid", "--out", tmp_path,
                        "--set", "data.codec_options.nodes=8")  # fmt: skip
    assert code == 2 and "unknown option nodes (known: max_nodes" in err
