"""The `graph_transformer` backbone: the core's contract, its cell bookkeeping, and learning."""

from __future__ import annotations

import pytest
import torch
from lcmd_graph import plugin as entry_point
from lcmd_graph.backbone import Cells, GraphTransformer
from lcmd_graph.codec import AdjacencyCodec, triangle_positions

from lcmd_core.backbone import BackboneSpec
from lcmd_core.codec import TokenSpec
from lcmd_core.config import ModelConfig
from lcmd_core.model import LCMD
from lcmd_core.plugins import PluginError, get_plugin_manager
from lcmd_core.testing import check_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def plugin_manager():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(entry_point, name="graph")
    return pm


def spec_for(positions, vocab: int = 5) -> BackboneSpec:
    return BackboneSpec(
        vocab_size=vocab,
        embed_dim=8,
        token_shape=(len(positions) if positions else 6,),
        positions=positions,
        num_classes=0,
        model=ModelConfig(width=32, depth=1, heads=2),
    )


@pytest.mark.parametrize("nodes", [2, 5])
def test_keeps_the_backbone_contract(nodes: int) -> None:
    spec = AdjacencyCodec(max_nodes=nodes).token_spec
    check_backbone("graph_transformer", spec, plugins=plugin_manager())


def test_cells_map_tokens_to_a_symmetric_matrix_and_back() -> None:
    positions = triangle_positions(4)
    rows, cols = torch.tensor(positions).T
    cells = Cells(rows, cols)
    per_token = torch.randn(2, len(positions), 3)
    matrix = cells.matrix(per_token)
    assert torch.equal(matrix, matrix.transpose(1, 2))
    for t, (i, j) in enumerate(positions):
        assert torch.equal(matrix[:, i, j], per_token[:, t])
    assert torch.allclose(cells.per_token(matrix), per_token)
    left, right = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    i, j = positions[6]  # (1, 3)
    expected = left[:, i] * right[:, j] + left[:, j] * right[:, i]
    assert torch.allclose(cells.pairs(left, right)[:, 6], expected)


def test_two_step_paths_count_common_neighbours() -> None:
    """With both halves the 0/1 adjacency, cell (i, j) holds i's and j's common neighbours / √N."""
    positions = triangle_positions(5)
    rows, cols = torch.tensor(positions).T
    cells = Cells(rows, cols)
    edges = {(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (1, 4)}
    present = torch.tensor([float((i, j) in edges) for i, j in positions])
    paths = cells.two_step_paths(present[None, :, None].expand(1, -1, 2))[0, :, 0] * 5**0.5
    adjacency = cells.matrix(present[None, :, None])[0, :, :, 0]
    for t, (i, j) in enumerate(positions):
        assert paths[t].item() == pytest.approx(float((adjacency[i] * adjacency[j]).sum()))
    assert paths[positions.index((0, 1))].item() == pytest.approx(1)  # node 2
    assert paths[positions.index((1, 3))].item() == pytest.approx(2)  # nodes 2 and 4


def test_an_edge_reads_the_edges_it_would_close_a_triangle_with() -> None:
    """In one layer, the logits of edge (0, 1) move with edge (0, 2) (a path 0-2-1): only the
    triangle update carries an edge's neighbours' edges, not the nodes' own features."""
    positions = triangle_positions(4)
    torch.manual_seed(0)
    net = GraphTransformer(spec_for(positions))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    z, lam = torch.randn(1, len(positions), 8), torch.tensor([0.5])
    moved = z.clone()
    moved[0, positions.index((0, 2))] += 1.0
    with torch.no_grad():
        change = (net(moved, lam) - net(z, lam))[0].abs().sum(-1)
    assert change[positions.index((0, 1))] > 1e-3
    assert change[positions.index((1, 3))] == 0  # no path through edge (0, 2) in one layer


def test_tokens_in_another_order_are_read_by_their_positions() -> None:
    """Shuffling the tokens and their positions together shuffles the logits the same way."""
    positions = triangle_positions(4)
    order = torch.randperm(len(positions), generator=torch.Generator().manual_seed(0))
    shuffled = tuple(positions[i] for i in order)
    torch.manual_seed(0)
    net = GraphTransformer(spec_for(positions))
    torch.manual_seed(0)
    other = GraphTransformer(spec_for(shuffled))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    other.load_state_dict(net.state_dict())
    z, lam = torch.randn(2, len(positions), 8), torch.tensor([0.0, 1.0])
    with torch.no_grad():
        assert torch.allclose(net(z, lam)[:, order], other(z[:, order], lam), atol=1e-5)


@pytest.mark.parametrize(
    "positions",
    [None, ((0, 0), (0, 1)), triangle_positions(3)[:-1], tuple((i,) for i in range(6))],
    ids=["none", "missing-diagonal", "incomplete", "one-axis"],
)
def test_tokens_that_are_not_an_adjacency_triangle_are_refused(positions) -> None:
    with pytest.raises(PluginError, match=r"graph_transformer: .*adjacency codec"):
        GraphTransformer(spec_for(positions))


def test_plain_sequences_get_a_one_line_error_through_the_model() -> None:
    with pytest.raises(PluginError, match="graph_transformer") as err:
        LCMD(5, 6, plugins=plugin_manager(), backbone="graph_transformer")
    assert "\n" not in str(err.value)


def test_learns_a_fixed_graph() -> None:
    """A one-graph data set: the model's samples become that graph within 450 steps."""
    import networkx as nx

    codec = AdjacencyCodec(max_nodes=6)
    target = codec.encode([nx.cycle_graph(5)])
    spec: TokenSpec = codec.token_spec
    torch.manual_seed(0)
    model = LCMD(spec.vocab_size, spec.seq_len, positions=spec.positions,
                 plugins=plugin_manager(), backbone="graph_transformer",
                 width=32, depth=2, heads=2, embed_dim=8)  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = target.expand(16, -1)
    for _ in range(450):
        opt.zero_grad()
        model.loss(batch)["total"].backward()
        opt.step()
    model.eval()
    drawn = model.sample(16, steps=20, seed=0)
    assert (drawn == target).all(dim=1).float().mean() >= 0.8
