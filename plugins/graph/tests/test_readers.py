"""User graph files: GraphML, edge lists and JSON; unreadable graphs become counted skips."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lcmd_graph.readers import read_edge_list, read_graph_files, read_graphml, read_json

from lcmd_core.plugins import CorruptItemError, DataNotFoundError

edge_sets = st.sets(
    st.tuples(st.integers(0, 12), st.integers(0, 12)).filter(lambda e: e[0] < e[1]), max_size=30
)
nodes = st.sets(st.integers(0, 12), max_size=13)
tmp = settings(
    deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def make(node_set: set[int], edges: set[tuple[int, int]]) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(str(n) for n in node_set)
    graph.add_edges_from((str(u), str(v)) for u, v in edges)
    return graph


def same(a: nx.Graph, b: nx.Graph) -> bool:
    return set(a.nodes) == set(b.nodes) and {frozenset(e) for e in a.edges} == {
        frozenset(e) for e in b.edges
    }


@tmp
@given(node_set=nodes, edges=edge_sets)
def test_graphml_round_trip(tmp_path: Path, node_set, edges) -> None:
    graph = make(node_set, edges)
    path = tmp_path / "g.graphml"
    nx.write_graphml(graph, path)
    assert same(read_graphml(path), graph)


@tmp
@given(node_set=nodes, edges=edge_sets)
def test_edge_list_round_trip(tmp_path: Path, node_set, edges) -> None:
    graph = make(node_set, edges)
    lines = ["# a comment", *(f"{u} {v}" for u, v in graph.edges), *map(str, graph.nodes)]
    path = tmp_path / "g.edgelist"
    path.write_text("\n".join(lines) + "\n")
    assert same(read_edge_list(path), graph)


@tmp
@given(graphs=st.lists(st.tuples(nodes, edge_sets), max_size=5))
def test_json_round_trip(tmp_path: Path, graphs) -> None:
    wanted = [make(n, e) for n, e in graphs]
    data = [
        {"nodes": list(g.nodes), "edges": [list(e) for e in g.edges]} if i % 2 else
        [list(e) for e in g.edges]
        for i, g in enumerate(wanted)
    ]  # fmt: skip
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    read = read_json(path)
    for i, (got, want) in enumerate(zip(read, wanted, strict=True)):
        if i % 2 == 0:  # a bare edge list has no isolated nodes
            want = want.subgraph([n for n in want if want.degree[n]])
        assert same(got, want)


def test_types_are_read_from_files(tmp_path: Path) -> None:
    graph = nx.Graph()
    graph.add_node("a", type="C")
    graph.add_node("b", type="O")
    graph.add_edge("a", "b", type="double")
    nx.write_graphml(graph, tmp_path / "m.graphml")
    read = read_graphml(tmp_path / "m.graphml")
    assert read.nodes["a"]["type"] == "C" and read.edges["a", "b"]["type"] == "double"
    (tmp_path / "m.txt").write_text("a b double\n")
    assert read_edge_list(tmp_path / "m.txt").edges["a", "b"]["type"] == "double"


def test_bad_graphs_are_placeholders_that_raise_when_read(tmp_path: Path) -> None:
    split = tmp_path / "train"
    split.mkdir()
    nx.write_graphml(nx.path_graph(3), split / "a-good.graphml")
    (split / "b-broken.graphml").write_text("<graphml><graph><node id='0'></graph>")
    (split / "c-loop.edgelist").write_text("0 1\n1 1\n")
    (split / "d-multi.txt").write_text("0 1\n1 0\n")
    (split / "e.json").write_text(json.dumps([[[0, 1]], [[0, 1, 2, 3]], "x"]))
    (split / "f-bad.json").write_text("[[0, 1]")
    graphs, labels = read_graph_files(tmp_path, "train")
    assert labels is None and len(graphs) == 8
    readable = []
    reasons = []
    for i in range(len(graphs)):
        try:
            readable.append(graphs[i])
        except CorruptItemError as err:
            reasons.append(str(err))
    assert len(readable) == 2 and graphs.unreadable == reasons
    assert "malformed GraphML" in reasons[0] and "self-loop at node '1'" in reasons[1]
    assert "appears twice" in reasons[2] and "[u, v] or [u, v, type]" in reasons[3]
    assert "edge list or an object" in reasons[4] and "malformed JSON" in reasons[5]
    with pytest.raises(CorruptItemError):
        graphs[0:3]


def test_missing_split_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(
        DataNotFoundError, match=r"no graph files in .*valid \(expected \*\.graphml"
    ):
        read_graph_files(tmp_path, "valid")
