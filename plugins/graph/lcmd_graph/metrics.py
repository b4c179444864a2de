"""Graph metrics with the SPECTRE/DiGress conventions: MMD² of degree, clustering and spectral
histograms under a Gaussian total-variation kernel, and V.U.N. (valid, unique, novel).

MMD² = mean k(x, x′) + mean k(y, y′) − 2 mean k(x, y) over all pairs (the biased V-statistic),
each histogram normalised to a pmf (sum + 1e-6) and zero-padded to a common length,
k(p, q) = exp(−TV(p, q)² / (2σ²)), TV = ½‖p − q‖₁. Statistics and σ:

- degree: `nx.degree_histogram`, σ = 1;
- clustering: clustering coefficients in 100 bins on [0, 1], σ = 0.1;
- spectre: eigenvalues of the normalised Laplacian in 200 bins on [−1e-5, 2], σ = 1.

Generated graphs without nodes are left out of the MMDs (as in the reference); 4-node orbit
counts need ORCA, which is not available, so there is no orbit MMD.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import networkx as nx
import numpy as np

from lcmd_core.plugins import CorruptItemError, MetricContext
from lcmd_graph.synthetic import SBM_SMALL, SBM_SPECTRE, SBMParams


def degree_histogram(graph: nx.Graph) -> np.ndarray:
    """Counts of nodes by degree 0, 1, 2, ..."""
    return np.asarray(nx.degree_histogram(graph), dtype=np.float64)


def clustering_histogram(graph: nx.Graph, bins: int = 100) -> np.ndarray:
    """Counts of nodes' clustering coefficients in `bins` bins on [0, 1]."""
    values = list(nx.clustering(graph).values())
    return np.histogram(values, bins=bins, range=(0.0, 1.0))[0].astype(np.float64)


def normalized_laplacian_eigenvalues(graph: nx.Graph) -> np.ndarray:
    """Eigenvalues of D^-½ (D − A) D^-½ (rows of isolated nodes are zero), ascending."""
    adjacency = nx.to_numpy_array(graph, dtype=np.float64)
    degree = adjacency.sum(axis=1)
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    laplacian = inv_sqrt[:, None] * (np.diag(degree) - adjacency) * inv_sqrt[None, :]
    return np.linalg.eigvalsh(laplacian)


def spectral_histogram(graph: nx.Graph) -> np.ndarray:
    """Normalised-Laplacian eigenvalues in 200 bins on [−1e-5, 2], as a pmf."""
    counts = np.histogram(normalized_laplacian_eigenvalues(graph), bins=200, range=(-1e-5, 2))[0]
    return counts / max(counts.sum(), 1)


STATISTICS: dict[str, tuple[Callable[[nx.Graph], np.ndarray], float]] = {
    "degree": (degree_histogram, 1.0),
    "clustering": (clustering_histogram, 0.1),
    "spectre": (spectral_histogram, 1.0),
}


def _pmfs(histograms: Sequence[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(histograms), length))
    for row, h in zip(out, histograms, strict=True):
        row[: len(h)] = h / (h.sum() + 1e-6)
    return out


def gaussian_tv_mmd2(x: Sequence[np.ndarray], y: Sequence[np.ndarray], sigma: float) -> float:
    """Biased MMD² between two sets of histograms under k = exp(−TV²/(2σ²)); NaN if one is empty."""
    if not x or not y:
        return math.nan
    length = max(len(h) for h in [*x, *y])
    px, py = _pmfs(x, length), _pmfs(y, length)

    def mean_kernel(a: np.ndarray, b: np.ndarray) -> float:
        tv = 0.5 * np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)
        return float(np.exp(-(tv**2) / (2 * sigma**2)).mean())

    return mean_kernel(px, px) + mean_kernel(py, py) - 2 * mean_kernel(px, py)


def mmd_stats(samples: Sequence[nx.Graph], references: Sequence[nx.Graph]) -> dict[str, float]:
    """MMD² of each statistic between samples (empty graphs left out) and references."""
    kept = [g for g in samples if g.number_of_nodes() > 0]
    out = {}
    for name, (stat, sigma) in STATISTICS.items():
        out[name] = gaussian_tv_mmd2([stat(g) for g in kept], [stat(g) for g in references], sigma)
    return out


# ------------------------------------------------------------------------------------ validity
def is_planar_valid(graph: nx.Graph) -> bool:
    """SPECTRE planar validity: connected and planar."""
    return graph.number_of_nodes() > 0 and nx.is_connected(graph) and nx.check_planarity(graph)[0]


def sbm_p_value(graph: nx.Graph, params: SBMParams, seed: int = 0) -> float | None:
    """Mean Wald-test p-value of the block edge probabilities against `params`, or None when the
    fitted partition breaks the strict checks (block count or a block's size out of range).

    Blocks are fitted by Louvain modularity maximisation (networkx) where the reference uses
    graph-tool's minimum-description-length SBM fit with merge-split refinement. The statistic is
    the reference's: W = (p̂ − p)² / (p̂(1 − p̂) + 1e-6) for every block pair (diagonal: intra, p̂
    from twice the edges over n(n − 1); off the diagonal: inter), p = P(χ²₁ > W), averaged.
    """
    if graph.number_of_nodes() == 0:
        return None
    blocks = [sorted(c) for c in nx.community.louvain_communities(graph, seed=seed)]
    sizes = np.array([len(b) for b in blocks], dtype=np.float64)
    if not params.blocks[0] <= len(blocks) <= params.blocks[1]:
        return None
    if sizes.min() < params.sizes[0] or sizes.max() > params.sizes[1]:
        return None
    block_of = {node: k for k, members in enumerate(blocks) for node in members}
    counts = np.zeros((len(blocks), len(blocks)))
    for u, v in graph.edges:
        a, b = block_of[u], block_of[v]
        counts[a, b] += 1
        counts[b, a] += 1  # a within-block edge counts twice, as the ordered pairs do
    pairs = np.outer(sizes, sizes)
    np.fill_diagonal(pairs, sizes * (sizes - 1))
    estimate = counts / (pairs + 1e-6)
    expected = np.full_like(estimate, params.p_out)
    np.fill_diagonal(expected, params.p_in)
    wald = (estimate - expected) ** 2 / (estimate * (1 - estimate) + 1e-6)
    p_values = np.vectorize(lambda w: math.erfc(math.sqrt(abs(w) / 2)))(wald)  # χ²₁ tail
    return float(p_values.mean())


def is_sbm_valid(graph: nx.Graph, params: SBMParams) -> bool:
    """SPECTRE/DiGress SBM validity: strict block checks and mean Wald p-value > 0.9."""
    p = sbm_p_value(graph, params)
    return p is not None and p > 0.9


def is_grid_valid(graph: nx.Graph) -> bool:
    """A 2-D grid graph (rows × columns, both at least 1)."""
    n, m = graph.number_of_nodes(), graph.number_of_edges()
    shapes = [(r, n // r) for r in range(1, math.isqrt(n) + 1) if n % r == 0]
    return any(
        m == r * (c - 1) + (r - 1) * c and nx.is_isomorphic(graph, nx.grid_2d_graph(r, c))
        for r, c in shapes
    )


SBM_SETS = {"sbm": SBM_SMALL, "sbm_spectre": SBM_SPECTRE}
VALIDITY: dict[str, Callable[[nx.Graph], bool]] = {
    "planar": is_planar_valid,
    "sbm": lambda g: is_sbm_valid(g, SBM_SMALL),
    "sbm_spectre": lambda g: is_sbm_valid(g, SBM_SPECTRE),
    "grid": is_grid_valid,
}


def sbm_fit_stats(samples: Sequence[nx.Graph], params: SBMParams) -> dict[str, float]:
    """How close SBM samples come to validity: the share passing the strict block checks and
    the mean Wald p-value over all samples (0 for a sample failing the checks)."""
    p_values = [sbm_p_value(g, params) for g in samples]
    return {
        "sbm_block_checks": float(np.mean([p is not None for p in p_values])),
        "sbm_mean_p": float(np.mean([p or 0.0 for p in p_values])),
    }


def edges_to_drop_for_planarity(graph: nx.Graph) -> int:
    """Edges a greedy pass leaves out to keep `graph` planar: it adds the edges one at a time in
    the graph's edge order and skips each that breaks planarity (0 for a planar graph; an upper
    bound on the fewest edges to remove)."""
    kept = nx.Graph()
    kept.add_nodes_from(graph)
    dropped = 0
    for u, v in graph.edges:
        kept.add_edge(u, v)
        if not nx.check_planarity(kept)[0]:
            kept.remove_edge(u, v)
            dropped += 1
    return dropped


def planar_fit_stats(samples: Sequence[nx.Graph]) -> dict[str, float]:
    """How close planar-set samples come to validity: the share that is planar (connected or
    not) and the mean number of edges a greedy pass drops to make a sample planar."""
    drops = [edges_to_drop_for_planarity(g) for g in samples]
    return {
        "planar_share": float(np.mean([d == 0 for d in drops])),
        "planar_edges_dropped": float(np.mean(drops)),
    }


# ------------------------------------------------------------------------------ V.U.N.
class IsomorphismIndex:
    """Graphs bucketed by Weisfeiler–Lehman hash; membership is checked by exact isomorphism."""

    def __init__(self, graphs: Iterable[nx.Graph] = ()) -> None:
        self._buckets: dict[str, list[nx.Graph]] = {}
        for graph in graphs:
            self.add(graph)

    @staticmethod
    def _key(graph: nx.Graph) -> str:
        with warnings.catch_warnings():  # networkx ≥ 3.5 warns that its hashes changed in 3.5
            warnings.simplefilter("ignore", UserWarning)
            return nx.weisfeiler_lehman_graph_hash(graph, iterations=3)

    def add(self, graph: nx.Graph) -> None:
        """Remember `graph`."""
        self._buckets.setdefault(self._key(graph), []).append(graph)

    def __contains__(self, graph: object) -> bool:
        assert isinstance(graph, nx.Graph)
        return any(nx.is_isomorphic(graph, g) for g in self._buckets.get(self._key(graph), ()))


def vun(
    samples: Sequence[nx.Graph],
    train: Sequence[nx.Graph],
    valid: Callable[[nx.Graph], bool] | None,
) -> dict[str, float]:
    """Fractions of samples that are valid, unique (not isomorphic to an earlier sample), novel
    (not isomorphic to a training graph), and all three (V.U.N.; without a validity test: U.N.)."""
    if not samples:
        return {}
    seen, known = IsomorphismIndex(), IsomorphismIndex(train)
    flags = []
    for graph in samples:
        unique = graph not in seen
        seen.add(graph)
        flags.append((valid(graph) if valid else True, unique, graph not in known))
    v, u, n = (np.array(column, dtype=bool) for column in zip(*flags, strict=True))
    out = {"unique": float(u.mean()), "novel": float(n.mean())}
    if valid is None:
        out["un"] = float((u & n).mean())
    else:
        out |= {"valid": float(v.mean()), "vun": float((v & u & n).mean())}
    return out


# ----------------------------------------------------------------------- registered metrics
def readable(items: Sequence[Any]) -> list[nx.Graph]:
    """The items of a raw split that can be read (user files may hold unreadable graphs)."""
    graphs = []
    for i in range(len(items)):
        try:
            graphs.append(items[i])
        except CorruptItemError:
            continue
    return graphs


def graph_mmd(
    samples: list[nx.Graph], references: list[nx.Graph], codec: Any, context: MetricContext
) -> dict[str, float]:
    """MMD² of samples vs the evaluated split, the train-vs-split reference, and their ratio
    (not for molecules: the `molecules` metric reports what that field measures)."""
    if getattr(codec, "name", None) == "molecule":
        return {}
    train = readable(context.load("train")[0])
    ours, reference = mmd_stats(samples, references), mmd_stats(train, references)
    out = {}
    for name in STATISTICS:
        ratio = ours[name] / reference[name] if reference[name] > 0 else math.nan
        out |= {name: ours[name], f"{name}_train": reference[name], f"{name}_ratio": ratio}
    return out


def graph_vun(
    samples: list[nx.Graph], references: list[nx.Graph], codec: Any, context: MetricContext
) -> dict[str, float]:
    """V.U.N. of samples against the training graphs, with the data set's validity test; the
    valid fraction of the evaluated split itself as a sanity reference (not for molecules)."""
    if getattr(codec, "name", None) == "molecule":
        return {}
    valid = VALIDITY.get(context.dataset.name)
    out = vun(samples, readable(context.load("train")[0]), valid)
    if context.dataset.name in SBM_SETS and samples:
        out |= sbm_fit_stats(samples, SBM_SETS[context.dataset.name])
    if context.dataset.name == "planar" and samples:
        out |= planar_fit_stats(samples)
    if valid is not None and references:
        out["valid_reference"] = float(np.mean([valid(g) for g in references]))
    return out
