"""Graph metrics: Gaussian-TV MMD², validity tests, V.U.N., and the Delaunay planar generator."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from lcmd_graph import metrics
from lcmd_graph.delaunay import delaunay_edges
from lcmd_graph.synthetic import SBM_SMALL, SBMParams, read_synthetic, sbm_graph


def test_gaussian_tv_kernel_value_on_two_histograms() -> None:
    # pmfs [1, 0] and [0, 1]: TV = 1, k = exp(-1/2); MMD² = 1 + 1 − 2·k (up to the 1e-6 smoothing)
    mmd = metrics.gaussian_tv_mmd2([np.array([1.0])], [np.array([0.0, 1.0])], sigma=1.0)
    assert mmd == pytest.approx(2 - 2 * math.exp(-0.5), abs=1e-5)
    assert math.isnan(metrics.gaussian_tv_mmd2([], [np.array([1.0])], 1.0))


def test_mmd_of_a_set_with_itself_is_zero_and_grows_across_families() -> None:
    planar, sbm = read_synthetic("planar", "test")[:20], read_synthetic("sbm", "test")[:20]
    same = metrics.mmd_stats(planar, planar)
    assert all(abs(v) < 1e-12 for v in same.values()), same
    other = metrics.mmd_stats(sbm, planar)
    held_out = metrics.mmd_stats(read_synthetic("planar", "train")[:20], planar)
    for name in metrics.STATISTICS:
        assert other[name] > 2.5 * held_out[name] > 0, (name, other, held_out)


def test_empty_samples_are_left_out_of_the_mmd() -> None:
    refs = [nx.cycle_graph(6)] * 3
    assert metrics.mmd_stats([nx.cycle_graph(6), nx.Graph()], refs)["degree"] == pytest.approx(0)


def test_normalized_laplacian_spectrum_matches_known_graphs() -> None:
    eig = metrics.normalized_laplacian_eigenvalues(nx.complete_graph(4))
    assert np.allclose(eig, [0, 4 / 3, 4 / 3, 4 / 3])
    eig = metrics.normalized_laplacian_eigenvalues(nx.empty_graph(2))  # isolated nodes: zeros
    assert np.allclose(eig, [0, 0])


def test_planar_validity() -> None:
    assert metrics.is_planar_valid(nx.complete_graph(4))
    assert not metrics.is_planar_valid(nx.complete_graph(5))  # K5
    assert not metrics.is_planar_valid(nx.complete_bipartite_graph(3, 3))  # K3,3
    assert not metrics.is_planar_valid(nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3)))
    assert not metrics.is_planar_valid(nx.Graph())


def test_sbm_validity_accepts_the_family_and_rejects_others() -> None:
    rng = np.random.default_rng(7)
    family = [sbm_graph(SBM_SMALL, rng) for _ in range(20)]
    assert sum(metrics.is_sbm_valid(g, SBM_SMALL) for g in family) >= 14
    dense = SBMParams(blocks=(2, 3), sizes=(12, 16), p_in=0.9, p_out=0.2)
    assert not any(metrics.is_sbm_valid(sbm_graph(dense, rng), SBM_SMALL) for _ in range(5))
    er = nx.gnp_random_graph(40, 0.2, seed=1)
    assert not metrics.is_sbm_valid(er, SBM_SMALL)
    assert metrics.sbm_p_value(nx.path_graph(5), SBM_SMALL) is None  # blocks too small


def test_grid_validity() -> None:
    grid = nx.convert_node_labels_to_integers(nx.grid_2d_graph(3, 4))
    assert metrics.is_grid_valid(grid) and metrics.is_grid_valid(nx.path_graph(5))
    assert not metrics.is_grid_valid(nx.cycle_graph(12))


def test_vun_counts_uniqueness_novelty_and_validity() -> None:
    train = [nx.cycle_graph(5), nx.path_graph(4)]
    samples = [
        nx.relabel_nodes(nx.cycle_graph(5), {0: 9}),  # valid, not novel
        nx.star_graph(3),  # valid, unique, novel
        nx.star_graph(3),  # duplicate
        nx.complete_graph(5),  # invalid (not planar)
    ]
    out = metrics.vun(samples, train, metrics.is_planar_valid)
    assert out == {"unique": 0.75, "novel": 0.75, "valid": 0.75, "vun": 0.25}
    assert metrics.vun(samples, train, None)["un"] == 0.5


def convex_hull_size(points: np.ndarray) -> int:
    """Vertices of the convex hull (Andrew's monotone chain)."""
    pts = sorted(map(tuple, points))

    def cross(o: tuple, a: tuple, b: tuple) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(seq: list) -> list:
        out: list = []
        for p in seq:
            while len(out) >= 2 and cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return len(half(pts) + half(pts[::-1]))


@pytest.mark.parametrize("seed", range(10))
def test_delaunay_is_a_maximal_planar_triangulation(seed: int) -> None:
    points = np.random.default_rng(seed).random((40, 2))
    edges = delaunay_edges(points)
    graph = nx.Graph(list(edges))
    assert graph.number_of_nodes() == 40 and nx.is_connected(graph)
    assert nx.check_planarity(graph)[0]
    # a triangulation of n points with h on the hull has 3n − 3 − h edges
    assert len(edges) == 3 * 40 - 3 - convex_hull_size(points)


def test_planarity_gap_counts_the_edges_a_greedy_pass_drops() -> None:
    points = np.random.default_rng(3).random((30, 2))
    triangulation = nx.Graph(list(delaunay_edges(points)))
    assert metrics.edges_to_drop_for_planarity(triangulation) == 0
    assert metrics.edges_to_drop_for_planarity(nx.complete_graph(5)) == 1  # K5 less an edge
    assert metrics.edges_to_drop_for_planarity(nx.complete_bipartite_graph(3, 3)) == 1
    assert metrics.edges_to_drop_for_planarity(nx.complete_graph(6)) == 3  # 15 − (3·6 − 6)
    stats = metrics.planar_fit_stats([triangulation, nx.complete_graph(5), nx.complete_graph(6)])
    assert stats == {"planar_share": pytest.approx(1 / 3), "planar_edges_dropped": 4 / 3}


def test_sbm_fit_stats_average_p_values_with_failed_checks_as_zero() -> None:
    rng = np.random.default_rng(7)
    family = [sbm_graph(SBM_SMALL, rng) for _ in range(6)]
    stats = metrics.sbm_fit_stats([*family, nx.path_graph(5), nx.path_graph(6)], SBM_SMALL)
    p_values = [metrics.sbm_p_value(g, SBM_SMALL) for g in family]
    assert stats["sbm_block_checks"] == pytest.approx(sum(p is not None for p in p_values) / 8)
    assert stats["sbm_mean_p"] == pytest.approx(sum(p or 0 for p in p_values) / 8)
    assert 0 < stats["sbm_mean_p"] < 1
