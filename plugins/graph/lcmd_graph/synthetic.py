"""The embedded graph sets, generated with fixed seeds: planar, SBM, community-small, grids.

Each set has 200 graphs split 128/32/40 (train/valid/test) as in SPECTRE (Martinkus et al.
2022); a graph's split is its position in the generated list, so the sets are the same on every
machine with the same networkx and numpy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import networkx as nx
import numpy as np

from lcmd_graph.delaunay import delaunay_edges

SPLITS = {"train": (0, 128), "valid": (128, 160), "test": (160, 200)}
NUM_GRAPHS = 200


@dataclass(frozen=True)
class SBMParams:
    """A stochastic block model family: block count and size ranges, edge probabilities."""

    blocks: tuple[int, int]  # inclusive range of the number of communities
    sizes: tuple[int, int]  # inclusive range of a community's node count
    p_in: float
    p_out: float

    @property
    def max_nodes(self) -> int:
        """The largest graph the family can produce."""
        return self.blocks[1] * self.sizes[1]


# SPECTRE's SBM: 2–5 communities of 20–40 nodes, p_in 0.3, p_out 0.005 (up to 200 nodes).
SBM_SPECTRE = SBMParams(blocks=(2, 5), sizes=(20, 40), p_in=0.3, p_out=0.005)
# Scaled down for a 2-core CPU: up to 48 nodes (1,176 tokens instead of 20,100). With blocks this
# small, p_in 0.3 leaves blocks too sparse for the block fit to recover (11 % of graphs pass the
# validity test) and p_out 0.005 leaves block pairs without an edge (a zero estimate fails the
# Wald test); p_in 0.5, p_out 0.02 pass it about as often as SPECTRE's parameters do.
SBM_SMALL = SBMParams(blocks=(2, 3), sizes=(12, 16), p_in=0.5, p_out=0.02)
PLANAR_NODES = 64
COMMUNITY_SMALL = SBMParams(blocks=(2, 2), sizes=(6, 10), p_in=0.7, p_out=0.05)
GRID_SIDES = (2, 6)


def sbm_graph(params: SBMParams, rng: np.random.Generator) -> nx.Graph:
    """One SBM graph: community count and sizes drawn uniformly from the ranges."""
    k = int(rng.integers(params.blocks[0], params.blocks[1] + 1))
    sizes = [int(s) for s in rng.integers(params.sizes[0], params.sizes[1] + 1, size=k)]
    probs = [[params.p_in if a == b else params.p_out for b in range(k)] for a in range(k)]
    blocks = nx.stochastic_block_model(sizes, probs, seed=int(rng.integers(2**31)))
    graph = nx.empty_graph(sum(sizes))  # without the generator's block attributes
    graph.add_edges_from(blocks.edges())
    return graph


def planar_graph(rng: np.random.Generator, nodes: int = PLANAR_NODES) -> nx.Graph:
    """One planar graph: the Delaunay triangulation of `nodes` uniform points in the unit square."""
    graph = nx.empty_graph(nodes)
    graph.add_edges_from(delaunay_edges(rng.random((nodes, 2))))
    return graph


def grid_graph(rng: np.random.Generator) -> nx.Graph:
    """One 2-D grid graph with both sides drawn from GRID_SIDES, nodes relabelled 0..n-1."""
    rows, cols = (int(s) for s in rng.integers(GRID_SIDES[0], GRID_SIDES[1] + 1, size=2))
    return nx.convert_node_labels_to_integers(nx.grid_2d_graph(rows, cols))


GENERATORS = {
    "planar": (planar_graph, 0),
    "sbm": (functools.partial(sbm_graph, SBM_SMALL), 1),
    "sbm_spectre": (functools.partial(sbm_graph, SBM_SPECTRE), 2),
    "community_small": (functools.partial(sbm_graph, COMMUNITY_SMALL), 3),
    "grid": (grid_graph, 4),
}
MAX_NODES = {
    "planar": PLANAR_NODES,
    "sbm": SBM_SMALL.max_nodes,
    "sbm_spectre": SBM_SPECTRE.max_nodes,
    "community_small": COMMUNITY_SMALL.max_nodes,
    "grid": GRID_SIDES[1] ** 2,
}


@functools.cache
def generate(name: str) -> tuple[nx.Graph, ...]:
    """All NUM_GRAPHS graphs of the embedded set `name`, from its fixed seed."""
    make, seed = GENERATORS[name]
    rng = np.random.default_rng(seed)
    return tuple(make(rng) for _ in range(NUM_GRAPHS))


def read_synthetic(name: str, split: str) -> list[nx.Graph]:
    """Copies of the graphs of one split of the embedded set `name`."""
    if split not in SPLITS:
        raise ValueError(f"{name} has no split {split!r} (splits: {', '.join(SPLITS)})")
    start, stop = SPLITS[split]
    return [g.copy() for g in generate(name)[start:stop]]
