"""The adjacency codec: conformance, canonical order, round trips, labelled graphs, bad input."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lcmd_graph.codec import NO_EDGE, PAD, AdjacencyCodec, canonical_order, triangle_positions

from lcmd_core.plugins import CorruptItemError
from lcmd_core.testing import CodecConformance


def same_graph(a: nx.Graph, b: nx.Graph) -> bool:
    """Isomorphic with equal node and edge types."""
    match = nx.algorithms.isomorphism.categorical_node_match("type", None)
    edge_match = nx.algorithms.isomorphism.categorical_edge_match("type", None)
    return nx.is_isomorphic(a, b, node_match=match, edge_match=edge_match)


class TestAdjacencyConformance(CodecConformance):
    def new_codec(self) -> AdjacencyCodec:
        return AdjacencyCodec(max_nodes=8)

    def sample_items(self) -> list[nx.Graph]:
        return [nx.path_graph(5), nx.cycle_graph(8), nx.star_graph(4), nx.empty_graph(3)]

    def assert_items_equal(self, decoded: list, items: list) -> None:
        assert len(decoded) == len(items)
        for got, want in zip(decoded, items, strict=True):
            assert same_graph(got, want), (sorted(got.edges), sorted(want.edges))
            assert sorted(got.nodes) == list(range(want.number_of_nodes()))


@st.composite
def graphs(draw: st.DrawFn, max_nodes: int = 9) -> nx.Graph:
    n = draw(st.integers(0, max_nodes))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    keep = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    labels = draw(st.permutations(range(n)))  # node names in any order
    graph = nx.Graph()
    graph.add_nodes_from(labels)
    graph.add_edges_from(p for p, k in zip(pairs, keep, strict=True) if k)
    return graph


@settings(deadline=None, max_examples=60)
@given(graph=graphs())
def test_round_trip_is_isomorphic_and_canonical(graph: nx.Graph) -> None:
    codec = AdjacencyCodec(max_nodes=9)
    tokens = codec.encode([graph])
    (decoded,) = codec.decode(tokens)
    assert same_graph(decoded, graph)
    assert torch.equal(codec.encode([decoded]), tokens)  # the decoded graph is in canonical order
    # tokens: PAD exactly where a node is absent
    for (i, j), token in zip(triangle_positions(9), tokens[0].tolist(), strict=True):
        absent = max(i, j) >= graph.number_of_nodes()
        assert (token == PAD) == absent


@settings(deadline=None, max_examples=40)
@given(
    graph=graphs(max_nodes=7),
    node_types=st.data(),
)
def test_labelled_graphs_keep_their_node_and_edge_types(graph: nx.Graph, node_types) -> None:
    for node in graph.nodes:
        graph.nodes[node]["type"] = node_types.draw(st.sampled_from("CNO"))
    for u, v in graph.edges:
        graph.edges[u, v]["type"] = node_types.draw(st.sampled_from(["single", "double"]))
    codec = AdjacencyCodec(max_nodes=7, node_types="CNO", edge_types=("single", "double"))
    assert codec.token_spec.vocab_size == 2 + 2 + 3
    (decoded,) = codec.decode(codec.encode([graph]))
    assert same_graph(decoded, graph)


def test_token_spec_has_the_upper_triangle_positions() -> None:
    spec = AdjacencyCodec(max_nodes=4).token_spec
    assert spec.seq_len == 10 and spec.vocab_size == 4
    assert spec.positions == ((0, 0), (0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 2),
                              (2, 3), (3, 3))  # fmt: skip
    assert AdjacencyCodec(max_nodes=5).token_spec.fingerprint != spec.fingerprint


def test_path_tokens_are_the_adjacency_in_canonical_order() -> None:
    tokens = AdjacencyCodec(max_nodes=4).encode([nx.path_graph(3)])[0].tolist()
    node, edge = 3, 2
    # canonical order: the middle node (degree 2) first, then its neighbours
    assert tokens == [node, edge, edge, PAD, node, NO_EDGE, PAD, node, PAD, PAD]


def test_canonical_order_is_bfs_from_the_highest_degree_node() -> None:
    graph = nx.Graph([(0, 1), (1, 2), (2, 3), (3, 4), (3, 5), (3, 6), (7, 8)])
    order = canonical_order(graph)
    assert order[:5] == [3, 2, 4, 5, 6] and order[5:7] == [1, 0] and order[7:] == [7, 8]


def test_decode_reads_stray_tokens_as_absent() -> None:
    codec = AdjacencyCodec(max_nodes=3)
    # cells: (0,0) (0,1) (0,2) (1,1) (1,2) (2,2); node 1 absent but an edge token at (0,1)
    (graph,) = codec.decode(torch.tensor([[3, 2, 2, PAD, 2, 3]]))
    assert sorted(graph.nodes) == [0, 1] and sorted(graph.edges) == [(0, 1)]
    (graph,) = codec.decode(torch.tensor([[3, 3, NO_EDGE, 3, 3, 3]]))  # a node token off-diagonal
    assert graph.number_of_nodes() == 3 and graph.number_of_edges() == 0


@pytest.mark.parametrize(
    ("graph", "match"),
    [
        (nx.path_graph(5), r"5 nodes, more than max_nodes=4; raise data.codec_options.max_nodes"),
        (nx.Graph([(0, 0), (0, 1)]), "self-loop at node 0"),
        (nx.MultiGraph([(0, 1), (0, 1)]), "a multigraph cannot be encoded"),
        (nx.DiGraph([(0, 1)]), "a directed graph cannot be encoded"),
        ("0-1", "encodes networkx graphs"),
    ],
)
def test_unrepresentable_graphs_are_one_line_errors(graph, match) -> None:
    with pytest.raises(CorruptItemError, match=match):
        AdjacencyCodec(max_nodes=4).encode([graph])


def test_unknown_types_are_refused() -> None:
    codec = AdjacencyCodec(max_nodes=4, node_types=("C",), edge_types=("single",))
    graph = nx.Graph()
    graph.add_node(0, type="N")
    with pytest.raises(CorruptItemError, match=r"node type 'N' is not one of \['C'\]"):
        codec.encode([graph])
    graph = nx.Graph()
    graph.add_nodes_from([0, 1], type="C")
    graph.add_edge(0, 1)
    with pytest.raises(CorruptItemError, match="edge type None"):
        codec.encode([graph])
