"""The `graph_transformer` backbone: attention over nodes with edge features, O(N² · width).

The adjacency codec's tokens are the cells (i, j), i ≤ j, of an N×N matrix. This network reads
them back into node features X[B, N, W] (the diagonal cells) and edge features E (every cell),
runs layers of edge-conditioned node attention with edge updates, and maps X to the logits of
the diagonal tokens and E to those of the others:

- scores: s_ij = q_i·k_j/√d_h · (1 + a(E_ij)) + b(E_ij) per head, so node i attends over the
  nodes j through what the edge (i, j) holds; the scores and a symmetric product of node i's
  and node j's features update E_ij;
- the sum of each node's edge features, Σ_j E_ij, enters the node update beside the attention
  (softmax attention averages, so it cannot count bonds: valences and degrees need the sum);
- a triangle update: channels of the two-step paths Σ_k a(E_ik) ⊙ b(E_kj) enter the edge
  update, so edge (i, j) sees the edges (i, k) and (k, j) — common neighbours, the triangles a
  new edge would close — which neither node's features can carry for every k (O(N³ · W_e));
- adaLN-Zero conditioning of every node and edge sub-layer on λ and the class, as in the DiT;
- fixed sin-cos encodings of the node index on X and of the index gap j − i on E (the codec's
  breadth-first order puts most edges near the diagonal).

Edge features are kept per token, E[B, L, W_e], one row per cell (i, j), i ≤ j; the attention
reads them as the symmetric N×N matrix.

The edge width W_e is an eighth of the model width (at least 8); both output layers start at
zero. Full attention over the L = N(N+1)/2 tokens costs O(N⁴ · width) a layer; this costs
O(N² · width + N³ · W_e).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lcmd_core.backbone import BackboneSpec
from lcmd_core.denoiser import SIZES, sincos_1d
from lcmd_core.plugins import PluginError

NAME = "graph_transformer"


def _ada(width: int, out: int) -> nn.Sequential:
    """adaLN-Zero: conditioning[B, width] → `out` modulation channels, zero at initialisation."""
    layer = nn.Linear(width, out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return nn.Sequential(nn.SiLU(), layer)


def _norm(width: int) -> nn.LayerNorm:
    return nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p else nn.Identity()  # no op at all: this network is op-bound


def _mlp(width: int, ratio: float, dropout: float) -> nn.Sequential:
    hidden = max(1, int(width * ratio))
    return nn.Sequential(
        nn.Linear(width, hidden),
        nn.GELU(approximate="tanh"),
        _dropout(dropout),
        nn.Linear(hidden, width),
    )


def _mod(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation of x[B, ..., W] by shift, scale [B, W]."""
    view = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    return x * (1 + scale.view(view)) + shift.view(view)


def _gate(gate: Tensor, x: Tensor) -> Tensor:
    return gate.view((x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)) * x


class Cells(nn.Module):
    """The token ↔ matrix-cell tables: token t is the cell (rows[t], cols[t]), rows ≤ cols."""

    def __init__(self, rows: Tensor, cols: Tensor) -> None:
        super().__init__()
        n = int(cols.max()) + 1
        table = torch.empty(n, n, dtype=torch.long)
        table[rows, cols] = torch.arange(rows.numel())
        table[cols, rows] = torch.arange(rows.numel())
        self.nodes = n
        # index_select throughout: its backward (index_add) is several times faster on the CPU
        # than that of advanced indexing (index_put with accumulation).
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.register_buffer("upper", rows * n + cols, persistent=False)  # flat (i, j)
        self.register_buffer("lower", cols * n + rows, persistent=False)  # flat (j, i)
        self.register_buffer("token_of", table.flatten(), persistent=False)  # [N²]
        self.register_buffer("diagonal", table.diagonal().clone(), persistent=False)  # [N]
        self.register_buffer("on_diagonal", rows == cols, persistent=False)  # [L]

    # Channels last throughout: gathering whole rows of C channels is about twice as fast as
    # gathering single elements along the last dimension.
    def matrix(self, per_token: Tensor) -> Tensor:
        """[B, L, C] → the symmetric [B, N, N, C] (cells (i, j) and (j, i) share a token)."""
        b, _, c = per_token.shape
        return per_token.index_select(1, self.token_of).view(b, self.nodes, self.nodes, c)

    def per_token(self, matrix: Tensor) -> Tensor:
        """[B, N, N, C] → [B, L, C], the mean of cells (i, j) and (j, i)."""
        flat = matrix.flatten(1, 2)
        return 0.5 * (flat.index_select(1, self.upper) + flat.index_select(1, self.lower))

    def node_sums(self, per_token: Tensor) -> Tensor:
        """[B, L, C] → [B, N, C]: for node i, the sum over the cells (i, j), j ≠ i (its edges)."""
        b, _, c = per_token.shape
        off = per_token * (~self.on_diagonal)[:, None].to(per_token.dtype)
        out = per_token.new_zeros(b, self.nodes, c)
        return out.index_add(1, self.rows, off).index_add(1, self.cols, off)

    def two_step_paths(self, per_token: Tensor) -> Tensor:
        """[B, L, 2C] → [B, L, C]: per cell (i, j), Σ_k a_ik ⊙ b_kj / √N of the two halves a, b
        read as symmetric matrices (symmetrised like `per_token`)."""
        a, b = self.matrix(per_token).permute(0, 3, 1, 2).chunk(2, 1)  # [B, C, N, N] each
        return self.per_token((a @ b * self.nodes**-0.5).permute(0, 2, 3, 1))

    def pairs(self, left: Tensor, right: Tensor) -> Tensor:
        """left, right [B, N, C] → [B, L, C]: left_i ⊙ right_j + left_j ⊙ right_i per cell."""
        outer = (left[:, :, None] * right[:, None]).flatten(1, 2)  # [B, N², C]
        return outer.index_select(1, self.upper) + outer.index_select(1, self.lower)


class GraphLayer(nn.Module):
    """Edge-conditioned node attention, edge update, node and edge MLPs (pre-norm, adaLN-Zero).

    Edge features live per token, e[B, L, W_e]: one row per cell (i, j), i ≤ j.
    """

    def __init__(self, width: int, edge_width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.node_norm1, self.node_norm2 = _norm(width), _norm(width)
        self.edge_norm1, self.edge_norm2 = _norm(edge_width), _norm(edge_width)
        self.qkv = nn.Linear(width, 3 * width)
        self.edge_film = nn.Linear(edge_width, 2 * heads)  # per-head (a, b) of the scores
        self.pair = nn.Linear(width, 2 * edge_width)  # node i, node j → edge (i, j)
        self.pair_norm = _norm(edge_width)  # a product of two projections: heavy-tailed
        self.triangle = nn.Linear(edge_width, 2 * edge_width)  # edges (i, k) and (k, j)
        self.node_out = nn.Linear(width, width)
        self.edge_sum = nn.Linear(edge_width, width)  # Σ_j E_ij: degrees and valences
        self.edge_out = nn.Linear(2 * edge_width + heads, edge_width)
        self.node_mlp = _mlp(width, mlp_ratio, dropout)
        self.edge_mlp = _mlp(edge_width, mlp_ratio / 2, dropout)
        self.drop = _dropout(dropout)
        self.ada = _ada(width, 6 * (width + edge_width))  # node then edge modulations
        self.split = [width] * 6 + [edge_width] * 6

    def forward(self, x: Tensor, e: Tensor, cond: Tensor, cells: Cells) -> tuple[Tensor, Tensor]:
        """x[B, N, W], e[B, L, W_e], cond[B, W] → updated (x, e)."""
        b, n, w = x.shape
        modulations = self.ada(cond).split(self.split, -1)
        n_shift1, n_scale1, n_gate1, n_shift2, n_scale2, n_gate2 = modulations[:6]
        e_shift1, e_scale1, e_gate1, e_shift2, e_scale2, e_gate2 = modulations[6:]
        h = _mod(self.node_norm1(x), n_shift1, n_scale1)
        he = _mod(self.edge_norm1(e), e_shift1, e_scale1)
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        film = cells.matrix(self.edge_film(he)).permute(0, 3, 1, 2)  # [B, 2H, N, N]
        mul, add = film.chunk(2, 1)
        scores = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5 * (1 + mul) + add
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, w)
        sums = self.edge_sum(cells.node_sums(he)) / cells.nodes
        x = x + _gate(n_gate1, self.drop(self.node_out(attended) + sums))
        left, right = self.pair(h).chunk(2, -1)
        pairs = self.pair_norm(cells.pairs(left, right))
        paths = cells.two_step_paths(self.triangle(he))
        update = torch.cat([pairs, paths, cells.per_token(scores.permute(0, 2, 3, 1))], -1)
        e = e + _gate(e_gate1, self.edge_out(update))
        x = x + _gate(n_gate2, self.node_mlp(_mod(self.node_norm2(x), n_shift2, n_scale2)))
        e = e + _gate(e_gate2, self.edge_mlp(_mod(self.edge_norm2(e), e_shift2, e_scale2)))
        return x, e


class GraphTransformer(nn.Module):
    """Adjacency-cell tokens z[B, L, D] → logits[B, L, K] through node and edge features."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        mc = spec.model
        base = SIZES[mc.size]
        width, depth, heads = mc.width or base.width, mc.depth or base.depth, mc.heads or base.heads
        if width % heads:
            raise PluginError(
                f"graph_transformer: width ({width}) must be divisible by heads ({heads})"
            )
        self.cells = Cells(*_cells(spec))
        self.num_classes = spec.num_classes
        self.self_condition = mc.self_condition
        edge_width = max(8, width // 8)
        rows, cols = self.cells.rows, self.cells.cols
        nodes = torch.arange(self.cells.nodes).float()
        self.register_buffer("node_pos", sincos_1d(nodes, width), persistent=False)
        gap = (cols - rows).float()
        self.register_buffer("edge_gap", sincos_1d(gap, edge_width), persistent=False)
        self.edge_pos = nn.Linear(width, 2 * edge_width)  # where (i, j) is: from node i and j
        in_dim = spec.embed_dim * (2 if mc.self_condition else 1)
        self.node_in = nn.Linear(in_dim, width)
        self.edge_in = nn.Linear(in_dim, edge_width)
        self.time_mlp = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.class_embed = nn.Embedding(spec.num_classes + 1, width) if spec.num_classes else None
        self.layers = nn.ModuleList(
            GraphLayer(width, edge_width, heads, mc.mlp_ratio, mc.dropout) for _ in range(depth)
        )
        self.node_final, self.edge_final = _norm(width), _norm(edge_width)
        self.final_ada = _ada(width, 2 * width)
        self.edge_final_ada = _ada(width, 2 * edge_width)
        self.node_logits = nn.Linear(width, spec.vocab_size)
        self.edge_logits = nn.Linear(edge_width, spec.vocab_size)
        for layer in (self.node_logits, self.edge_logits):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.weight, std=0.02)

    def forward(
        self,
        z: Tensor,
        log_snr: Tensor,
        labels: Tensor | None = None,
        self_cond: Tensor | None = None,
    ) -> Tensor:
        """z[B, L, D] (input-scaled), λ[B], labels[B] or None, self_cond[B, L, D] or None →
        logits[B, L, K]."""
        if self.self_condition:
            z = torch.cat([z, self_cond if self_cond is not None else torch.zeros_like(z)], -1)
        x = self.node_in(z.index_select(1, self.cells.diagonal)) + self.node_pos.to(z.dtype)
        left, right = self.edge_pos(self.node_pos[None]).chunk(2, -1)
        e = self.edge_in(z) + self.edge_gap.to(z.dtype) + self.cells.pairs(left, right)
        cond = self.time_mlp(sincos_1d(log_snr.float() * 25.0, 256).to(z))
        if self.class_embed is not None:
            if labels is None:
                labels = torch.full_like(log_snr, self.num_classes, dtype=torch.long)
            cond = cond + self.class_embed(labels)
        for layer in self.layers:
            x, e = layer(x, e, cond, self.cells)
        shift, scale = self.final_ada(cond).chunk(2, -1)
        e_shift, e_scale = self.edge_final_ada(cond).chunk(2, -1)
        node = self.node_logits(_mod(self.node_final(x), shift, scale))  # [B, N, K]
        edge = self.edge_logits(_mod(self.edge_final(e), e_shift, e_scale))  # [B, L, K]
        diagonal = self.cells.on_diagonal[:, None]
        return torch.where(diagonal, node.index_select(1, self.cells.rows), edge)


def _cells(spec: BackboneSpec) -> tuple[Tensor, Tensor]:
    """The tokens' (row, column) cells, checked to be the i ≤ j triangle of an N×N matrix."""
    hint = "it needs the adjacency codec's tokens (the (i, j), i ≤ j, cells of an N×N matrix)"
    if spec.positions is None or any(len(p) != 2 for p in spec.positions):
        raise PluginError(f"graph_transformer: the tokens carry no (i, j) positions; {hint}")
    cells = torch.tensor(spec.positions, dtype=torch.long)
    rows, cols = cells[:, 0], cells[:, 1]
    n = int(cols.max()) + 1
    expected = {(i, j) for i in range(n) for j in range(i, n)}
    if {(int(i), int(j)) for i, j in cells} != expected or len(cells) != len(expected):
        raise PluginError(
            f"graph_transformer: the {len(cells)} token positions are not the {len(expected)} "
            f"upper-triangle cells of a {n}×{n} matrix; {hint}"
        )
    return rows, cols
