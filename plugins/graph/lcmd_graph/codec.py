"""The `adjacency` codec: graphs of up to N nodes ↔ the upper triangle of their adjacency matrix.

Tokens are the cells (i, j), i ≤ j, of an N×N adjacency matrix in row-major order, N(N+1)/2 of
them, with their (i, j) coordinates as `TokenSpec.positions`. The diagonal cell (i, i) holds
node i's type (PAD when the graph has fewer than i + 1 nodes), the cell (i, j), i < j, holds
"no edge" or the edge's type (PAD when node i or j is absent). Nodes are put in a canonical
order first — breadth-first from the highest-degree node, neighbours by degree — so that the
model sees one of few orderings of each graph.

Vocabulary: 0 PAD, 1 no edge, 2.. the edge types, then the node types. Unlabelled graphs have one
edge type and one node type; labelled graphs carry `type` attributes on nodes and edges whose
values are listed in the codec options `node_types` / `edge_types`.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import torch

from lcmd_core.codec import TokenSpec, fingerprint_of
from lcmd_core.plugins import CorruptItemError, PluginError

PAD, NO_EDGE = 0, 1
STATE_FILE = "adjacency.json"
OPTIONS = ("max_nodes", "node_types", "edge_types")


def canonical_order(graph: nx.Graph) -> list[Any]:
    """Nodes breadth-first from the highest-degree node; ties by degree, then input order.

    Each connected component is traversed from its highest-degree node, largest degree first.
    """
    rank = {node: i for i, node in enumerate(graph.nodes)}

    def key(node: Any) -> tuple[int, int]:
        return (-graph.degree[node], rank[node])

    order: list[Any] = []
    seen: set[Any] = set()
    for root in sorted(graph.nodes, key=key):
        if root in seen:
            continue
        seen.add(root)
        queue = deque([root])
        while queue:
            node = queue.popleft()
            order.append(node)
            for nb in sorted((n for n in graph.neighbors(node) if n not in seen), key=key):
                seen.add(nb)
                queue.append(nb)
    return order


def triangle_positions(max_nodes: int) -> tuple[tuple[int, int], ...]:
    """The (i, j), i ≤ j, cells of an N×N matrix in row-major order: the codec's token order."""
    return tuple((i, j) for i in range(max_nodes) for j in range(i, max_nodes))


class AdjacencyCodec:
    """networkx graphs with at most `max_nodes` nodes ↔ `LongTensor[n, N(N+1)/2]`."""

    name = "adjacency"
    needs_fit = False

    def __init__(
        self,
        max_nodes: int = 64,
        node_types: Sequence[str] = (),
        edge_types: Sequence[str] = (),
    ) -> None:
        self._configure(max_nodes, node_types, edge_types)

    def _configure(
        self, max_nodes: int, node_types: Sequence[str], edge_types: Sequence[str]
    ) -> None:
        if max_nodes < 2:
            raise PluginError(f"adjacency codec: max_nodes must be at least 2, got {max_nodes}")
        self.max_nodes = int(max_nodes)
        self.node_types = tuple(str(t) for t in node_types)
        self.edge_types = tuple(str(t) for t in edge_types)
        for kind, names in (("node_types", self.node_types), ("edge_types", self.edge_types)):
            if len(set(names)) != len(names):
                raise PluginError(f"adjacency codec: {kind} has duplicates: {list(names)}")
        self._positions = triangle_positions(self.max_nodes)
        rows, cols = zip(*self._positions, strict=True)
        self._rows, self._cols = torch.tensor(rows), torch.tensor(cols)

    @property
    def num_edge_tokens(self) -> int:
        """Edge tokens: one per edge type (one for unlabelled edges)."""
        return max(1, len(self.edge_types))

    @property
    def node_offset(self) -> int:
        """Id of the first node-type token."""
        return 2 + self.num_edge_tokens

    @property
    def token_spec(self) -> TokenSpec:
        vocab = self.node_offset + max(1, len(self.node_types))
        return TokenSpec(
            vocab_size=vocab,
            token_shape=(len(self._positions),),
            fingerprint=fingerprint_of(self.name, self.options()),
            positions=self._positions,
        )

    def options(self) -> dict[str, Any]:
        """The options that rebuild this codec."""
        return {
            "max_nodes": self.max_nodes,
            "node_types": list(self.node_types),
            "edge_types": list(self.edge_types),
        }

    def fit(self, items: Sequence[nx.Graph]) -> None:
        """Nothing to fit: the codec is fixed by its options."""

    def _type_id(self, names: tuple[str, ...], value: Any, what: str) -> int:
        if not names:
            return 0
        if value is None or str(value) not in names:
            raise CorruptItemError(
                f"adjacency codec: {what} type {value!r} is not one of {list(names)}"
            )
        return names.index(str(value))

    def _matrix(self, graph: Any) -> torch.Tensor:
        """One graph → its full N×N token matrix (PAD outside the graph's nodes)."""
        if not isinstance(graph, nx.Graph):
            raise CorruptItemError(f"adjacency codec encodes networkx graphs, got {type(graph)}")
        if graph.is_directed() or graph.is_multigraph():
            kind = "directed graph" if graph.is_directed() else "multigraph"
            raise CorruptItemError(f"adjacency codec: a {kind} cannot be encoded (undirected only)")
        n = graph.number_of_nodes()
        if n > self.max_nodes:
            raise CorruptItemError(
                f"adjacency codec: a graph has {n} nodes, more than max_nodes={self.max_nodes}; "
                "raise data.codec_options.max_nodes"
            )
        loops = list(nx.selfloop_edges(graph))
        if loops:
            raise CorruptItemError(
                f"adjacency codec: self-loop at node {loops[0][0]!r} (the diagonal holds nodes)"
            )
        order = canonical_order(graph)
        index = {node: i for i, node in enumerate(order)}
        matrix = torch.full((self.max_nodes, self.max_nodes), PAD, dtype=torch.long)
        matrix[:n, :n] = NO_EDGE
        for node in order:
            t = self._type_id(self.node_types, graph.nodes[node].get("type"), "node")
            matrix[index[node], index[node]] = self.node_offset + t
        for u, v, data in graph.edges(data=True):
            t = self._type_id(self.edge_types, data.get("type"), "edge")
            i, j = sorted((index[u], index[v]))
            matrix[i, j] = 2 + t
        return matrix

    def encode(self, items: Sequence[nx.Graph]) -> torch.Tensor:
        """Graphs → `LongTensor[n, N(N+1)/2]` (upper triangle, diagonal included, row-major)."""
        if not items:
            return torch.empty(0, len(self._positions), dtype=torch.long)
        matrices = torch.stack([self._matrix(g) for g in items])
        return matrices[:, self._rows, self._cols]

    def decode(self, tokens: torch.Tensor) -> list[nx.Graph]:
        """Tokens → graphs on nodes 0..n-1: a node where the diagonal holds a node type, an edge
        where the cell between two nodes holds an edge type; anything else reads as absent."""
        spec = self.token_spec
        if tokens.ndim != 2 or tokens.shape[1] != spec.seq_len:
            raise ValueError(
                f"adjacency codec decodes tokens of shape [n, {spec.seq_len}], "
                f"got {list(tokens.shape)}"
            )
        graphs = []
        for row in tokens.long().cpu():
            matrix = torch.full((self.max_nodes, self.max_nodes), PAD, dtype=torch.long)
            matrix[self._rows, self._cols] = row
            diagonal = matrix.diagonal()
            nodes = [int(i) for i in torch.nonzero(diagonal >= self.node_offset).flatten()]
            graph = nx.Graph()
            for new, old in enumerate(nodes):
                attrs = {}
                if self.node_types:
                    type_id = min(int(diagonal[old]) - self.node_offset, len(self.node_types) - 1)
                    attrs["type"] = self.node_types[type_id]
                graph.add_node(new, **attrs)
            for a, i in enumerate(nodes):
                for b in range(a + 1, len(nodes)):
                    token = int(matrix[i, nodes[b]])
                    if 2 <= token < self.node_offset:
                        attrs = {"type": self.edge_types[token - 2]} if self.edge_types else {}
                        graph.add_edge(a, b, **attrs)
            graphs.append(graph)
        return graphs

    def write(self, items: Sequence[nx.Graph], directory: Path) -> list[Path]:
        """Write `graph-NNNN.graphml` for every graph and a drawing of them all, `grid.png`."""
        from lcmd_graph.draw import draw_grid

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, graph in enumerate(items):
            path = directory / f"graph-{i:04d}.graphml"
            nx.write_graphml(graph, path)
            paths.append(path)
        grid = directory / "grid.png"
        draw_grid(list(items)).save(grid)
        return [*paths, grid]

    def save(self, directory: Path) -> None:
        """Write the options to `adjacency.json`."""
        state = {"codec": self.name, **self.options()}
        (Path(directory) / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def load(self, directory: Path) -> None:
        """Restore the options saved by `save`."""
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise PluginError(f"adjacency codec: no {STATE_FILE} in {directory}")
        state = json.loads(path.read_text())
        self._configure(*(state[k] for k in OPTIONS))
