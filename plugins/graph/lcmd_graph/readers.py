"""User graphs from files: GraphML, edge lists, and JSON lists of edge lists.

`DATA_ROOT/<split>/` (split = train, valid, test) holds any mix of
- `*.graphml`: one undirected graph a file (node and edge `type` attributes are kept);
- `*.edgelist`, `*.edges`, `*.txt`: one graph a file, a line `u v` or `u v type` per edge, `#`
  comments; a line with a single node name adds an isolated node;
- `*.json`: a list of graphs, each an edge list `[[u, v], ...]` or an object
  `{"nodes": [...], "edges": [[u, v], ...]}`.

A graph that cannot be read (malformed file, self-loop, repeated edge) stays in the list as a
placeholder that raises `CorruptItemError` when accessed, so `lcmd prepare` skips and counts it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload
from xml.etree.ElementTree import ParseError

import networkx as nx

from lcmd_core.plugins import CorruptItemError, DataNotFoundError

EDGE_LIST_SUFFIXES = (".edgelist", ".edges", ".txt")
SUFFIXES = (".graphml", ".json", *EDGE_LIST_SUFFIXES)
SOURCE = (
    "your own graphs: DATA_ROOT/{train,valid,test}/ with *.graphml, *.edgelist/*.edges/*.txt "
    "(one graph a file) or *.json (a list of edge lists)"
)


class Unreadable:
    """Placeholder for a graph that could not be read, with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class GraphList(Sequence[nx.Graph]):
    """Graphs of a split; indexing an unreadable one raises `CorruptItemError`."""

    def __init__(self, entries: list[nx.Graph | Unreadable]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> nx.Graph: ...

    @overload
    def __getitem__(self, index: slice) -> list[nx.Graph]: ...

    def __getitem__(self, index: int | slice) -> nx.Graph | list[nx.Graph]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        entry = self._entries[index]
        if isinstance(entry, Unreadable):
            raise CorruptItemError(entry.reason)
        return entry

    def __iter__(self) -> Iterator[nx.Graph]:
        return (self[i] for i in range(len(self)))

    @property
    def unreadable(self) -> list[str]:
        """Reasons of the graphs that could not be read."""
        return [e.reason for e in self._entries if isinstance(e, Unreadable)]


def simple_graph(nodes: Sequence[Any], edges: Sequence[Sequence[Any]], where: str) -> nx.Graph:
    """An undirected simple graph; ValueError naming `where` for self-loops and repeated edges."""
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    for edge in edges:
        if not isinstance(edge, list | tuple) or len(edge) not in (2, 3):
            raise ValueError(f"{where}: an edge must be [u, v] or [u, v, type], got {edge!r}")
        u, v = edge[0], edge[1]
        if u == v:
            raise ValueError(f"{where}: self-loop at node {u!r}, which the codec cannot represent")
        if graph.has_edge(u, v):
            raise ValueError(f"{where}: edge {u!r}–{v!r} appears twice (multigraphs unsupported)")
        graph.add_edge(u, v, **({"type": str(edge[2])} if len(edge) == 3 else {}))
    return graph


def read_graphml(path: Path) -> nx.Graph:
    """One graph from a GraphML file; ValueError for anything the codec cannot take."""
    try:
        graph = nx.read_graphml(path)
    except (ParseError, nx.NetworkXError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: malformed GraphML ({err})") from None
    edges = [(u, v, d["type"]) if "type" in d else (u, v) for u, v, d in (graph.edges(data=True))]
    if graph.is_directed() and any(graph.has_edge(v, u) for u, v, *_ in edges if u != v):
        raise ValueError(f"{path}: directed graph with edges both ways (undirected graphs only)")
    simple = simple_graph(list(graph.nodes), edges, str(path))
    for node, data in graph.nodes(data=True):
        if "type" in data:
            simple.nodes[node]["type"] = str(data["type"])
    return simple


def read_edge_list(path: Path) -> nx.Graph:
    """One graph from an edge-list file (`u v [type]` a line, `#` comments)."""
    nodes, edges = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if len(fields) == 1:
            nodes.append(fields[0])
        elif len(fields) in (2, 3):
            edges.append(fields)
        elif fields:
            raise ValueError(f"{path}:{number}: expected `u v [type]`, got {line.strip()!r}")
    return simple_graph(nodes, edges, str(path))


def read_json(path: Path) -> list[nx.Graph | Unreadable]:
    """Graphs from a JSON list of edge lists or {"nodes", "edges"} objects."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return [Unreadable(f"{path}: malformed JSON ({err})")]
    if not isinstance(data, list):
        return [Unreadable(f"{path}: expected a JSON list of graphs, got {type(data).__name__}")]
    out: list[nx.Graph | Unreadable] = []
    for i, entry in enumerate(data):
        where = f"{path}[{i}]"
        try:
            if isinstance(entry, dict):
                out.append(simple_graph(entry.get("nodes", []), entry.get("edges", []), where))
            elif isinstance(entry, list):
                out.append(simple_graph([], entry, where))
            else:
                raise ValueError(f"{where}: a graph is an edge list or an object")
        except (ValueError, TypeError) as err:
            out.append(Unreadable(str(err)))
    return out


def read_graph_files(root: Path | None, split: str) -> tuple[GraphList, None]:
    """All graphs of `root/<split>/`, files in name order."""
    directory = Path(root or ".") / split
    files = (
        sorted(p for p in directory.glob("*") if p.suffix in SUFFIXES) if directory.is_dir() else []
    )
    if not files:
        raise DataNotFoundError(
            f"no graph files in {directory} (expected *.graphml, *.json, *.edgelist, *.edges or "
            "*.txt)"
        )
    entries: list[nx.Graph | Unreadable] = []
    for path in files:
        if path.suffix == ".json":
            entries.extend(read_json(path))
            continue
        try:
            entries.append(
                read_graphml(path) if path.suffix == ".graphml" else read_edge_list(path)
            )
        except (ValueError, UnicodeDecodeError) as err:
            entries.append(Unreadable(str(err)))
    return GraphList(entries), None
