"""Drawings of graphs with Pillow: a spring layout per graph, many graphs in one grid image."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
from PIL import Image, ImageDraw

CELL = 160
MARGIN = 10
NODE_RADIUS = 3
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189))


def layout(graph: nx.Graph, seed: int = 0) -> dict[object, np.ndarray]:
    """Node positions in [0, 1]²: a spring layout (circular for graphs without edges)."""
    if graph.number_of_nodes() == 0:
        return {}
    if graph.number_of_edges() == 0:
        pos = nx.circular_layout(graph)
    else:
        pos = nx.spring_layout(graph, seed=seed)
    coords = np.array([pos[n] for n in graph.nodes], dtype=np.float64).reshape(-1, 2)
    lo, span = coords.min(axis=0), np.ptp(coords, axis=0)
    span[span == 0] = 1.0
    scaled = (coords - lo) / span if len(coords) > 1 else np.full((1, 2), 0.5)
    return dict(zip(graph.nodes, scaled, strict=True))


def _colour(graph: nx.Graph, node: object, types: dict[str, int]) -> tuple[int, int, int]:
    kind = graph.nodes[node].get("type")
    if kind is None:
        return PALETTE[0]
    return PALETTE[types.setdefault(str(kind), len(types)) % len(PALETTE)]


def draw_grid(graphs: list[nx.Graph], cell: int = CELL) -> Image.Image:
    """One RGB image with every graph drawn in its own cell, ⌈√n⌉ cells a row."""
    columns = max(1, math.ceil(math.sqrt(len(graphs))))
    rows = max(1, math.ceil(len(graphs) / columns))
    image = Image.new("RGB", (columns * cell, rows * cell), "white")
    draw = ImageDraw.Draw(image)
    types: dict[str, int] = {}
    inner = cell - 2 * MARGIN
    for k, graph in enumerate(graphs):
        ox, oy = (k % columns) * cell + MARGIN, (k // columns) * cell + MARGIN
        pos = {n: (ox + p[0] * inner, oy + p[1] * inner) for n, p in layout(graph, k).items()}
        for u, v in graph.edges:
            draw.line([pos[u], pos[v]], fill=(120, 120, 120), width=1)
        for node, (x, y) in pos.items():
            r = NODE_RADIUS
            draw.ellipse([x - r, y - r, x + r, y + r], fill=_colour(graph, node, types))
        draw.rectangle([ox - MARGIN, oy - MARGIN, ox - MARGIN + cell - 1, oy - MARGIN + cell - 1],
                       outline=(220, 220, 220))  # fmt: skip
    return image
