"""Molecules: SMILES ↔ graphs ↔ tokens, QM9's files and split, and the molecule metrics."""

from __future__ import annotations

import io
import json
import math
import random
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import networkx as nx
import pytest

pytest.importorskip("rdkit", reason="the graph plugin's molecules extra (make installs it)")

from lcmd_graph import plugin as entry_point
from lcmd_graph import qm9
from lcmd_graph.molecule_codec import MoleculeCodec
from lcmd_graph.molecule_metrics import fcd, type_tv, validity_uniqueness_novelty
from lcmd_graph.molecules import (
    atom_type,
    canonical_smiles,
    parse_atom_type,
    smiles_to_graph,
    written_smiles,
)
from rdkit import Chem

from lcmd_core.cli import main
from lcmd_core.plugins import DataNotFoundError, PluginError, get_plugin_manager
from lcmd_core.testing import CodecConformance

pytestmark = pytest.mark.usefixtures("one_thread")
HAS_QM9 = qm9.importlib.util.find_spec(qm9.PACKAGE) is not None
needs_qm9 = pytest.mark.skipif(not HAS_QM9, reason="qm9pack is not installed (make installs it)")


def canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def star(centre: str, leaves: list[str]) -> nx.Graph:
    graph = nx.Graph()
    graph.add_node(0, type=centre)
    for i, leaf in enumerate(leaves, start=1):
        graph.add_node(i, type=leaf)
        graph.add_edge(0, i, type="single")
    return graph


@pytest.fixture(scope="module")
def qm9_rows() -> tuple[tuple[int, str], ...]:
    if not HAS_QM9:
        pytest.skip("qm9pack is not installed (make installs it)")
    return qm9.read_rows(qm9.package_dir())


class TestMoleculeCodec(CodecConformance):
    def new_codec(self) -> MoleculeCodec:
        return MoleculeCodec()

    def sample_items(self) -> list[nx.Graph]:
        return [smiles_to_graph(s) for s in ("CC(=O)O", "c1ccoc1", "C[NH3+]", "N#CC1CC1")]

    def assert_items_equal(self, decoded: list, items: list) -> None:
        assert [canonical_smiles(g) for g in decoded] == [canonical_smiles(g) for g in items]


@pytest.mark.parametrize(("symbol", "charge"), [("C", 0), ("N", 1), ("O", -1), ("C", 2)])
def test_atom_type_names_round_trip(symbol: str, charge: int) -> None:
    assert parse_atom_type(atom_type(symbol, charge)) == (symbol, charge)


@needs_qm9
def test_qm9_rows_round_trip_to_the_same_canonical_smiles(qm9_rows) -> None:
    """SMILES → graph → tokens → graph → SMILES on every 250th QM9 molecule (charged ones too)."""
    picked = [s for _, s in qm9_rows[::250]] + ["C[NH3+]", "[O-]C(=O)C[NH3+]", "[C-]#[N+]C"]
    codec = MoleculeCodec()
    decoded = codec.decode(codec.encode([smiles_to_graph(s) for s in picked]))
    assert [canonical_smiles(g) for g in decoded] == [canonical(s) for s in picked]


@needs_qm9
def test_qm9_split_is_digress_split_of_the_characterised_molecules(qm9_rows) -> None:
    split = qm9.split_of_index()
    assert [int((split == k).sum()) for k in range(3)] == [100_000, 20_497, 13_388]
    counts = [sum(split[i - 1] == k for i, _ in qm9_rows) for k in range(3)]
    assert counts == [97_734, 20_042, 13_055] and sum(counts) == len(qm9_rows) == 130_831
    assert max(len(smiles_to_graph(s)) for _, s in qm9_rows[::500]) <= qm9.MAX_ATOMS


def write_qm9(root: Path, rows: dict[str, list[str]]) -> None:
    for name in qm9.FILES:
        lines = rows.get(name, ["XYZ_file,Index,SMILES", '"a.xyz",1,"C"'])
        (root / name).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"missing": None}, r"qm9: .*qm9_part2\.csv is missing; replace it"),
        ({"qm9_part2.csv": ["XYZ_file,SMILE", "x,C"]}, r"qm9_part2\.csv has no Index and SMILES"),
        ({"qm9_part3.csv": ["Index,SMILES", "seven,C"]}, r"qm9_part3\.csv line 2 is malformed"),
        ({"qm9_part1.csv": ["Index,SMILES", "999999,C"]}, r"qm9_part1\.csv line 2: index"),
    ],
    ids=["missing", "no-columns", "bad-index", "index-range"],
)
def test_bad_qm9_files_are_one_line_errors_naming_the_file(
    tmp_path: Path, files: dict, message: str
) -> None:
    write_qm9(tmp_path, {k: v for k, v in files.items() if v is not None})
    if "missing" in files:
        (tmp_path / "qm9_part2.csv").unlink()
    with pytest.raises(PluginError, match=message) as err:
        qm9.read_qm9(tmp_path, "train")
    assert "\n" not in str(err.value)


def test_missing_package_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qm9.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotFoundError, match=r"qm9pack is not installed; pip install qm9pack"):
        qm9.read_qm9(None, "train")


def test_a_damaged_package_file_is_named_through_the_cli(tmp_path: Path) -> None:
    """`lcmd prepare` on a QM9 copy with a truncated file: exit 2 (or 1), one line, the file."""
    write_qm9(tmp_path, {"qm9_part3.csv": ["Index,SMILES", "5"]})
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(entry_point, name="graph")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["prepare", "--plugin", "graph", "--data", "qm9", "--data-root",
                     str(tmp_path), "--out", str(tmp_path / "run")], pm=pm)  # fmt: skip
    assert code != 0
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "qm9_part3.csv" in lines[0], err.getvalue()


def test_validity_uniqueness_novelty_on_known_lists() -> None:
    invalid_whole = nx.disjoint_union(smiles_to_graph("CCCC"), star("F", ["F", "F"]))
    samples = [
        smiles_to_graph("CCO"),
        smiles_to_graph("OCC"),  # the same molecule
        smiles_to_graph("c1ccccc1"),
        smiles_to_graph("CC.O"),  # valid, two fragments
        star("C", ["C"] * 5),  # pentavalent carbon
        invalid_whole,  # F with two bonds; its largest fragment (butane) is fine
    ]
    out, valid = validity_uniqueness_novelty(samples, train_smiles={"CCO"})
    assert valid == ["CCO", "CCO", "c1ccccc1", "CC.O"]
    assert out["valid"] == pytest.approx(4 / 6)
    assert out["valid_largest_fragment"] == pytest.approx(5 / 6)
    assert out["connected"] == pytest.approx(4 / 6)
    assert out["unique"] == pytest.approx(3 / 4)  # CCO, c1ccccc1, CC.O of 4 valid
    assert out["novel"] == pytest.approx(2 / 3)  # c1ccccc1 and CC.O are not in train
    assert validity_uniqueness_novelty([], set()) == ({}, [])


def test_invalid_samples_are_written_unsanitised() -> None:
    assert written_smiles(star("C", ["C"] * 5)) == "C(C)(C)(C)(C)C"
    assert written_smiles(smiles_to_graph("OCC")) == "CCO"


def test_type_tv_known_values() -> None:
    assert type_tv(["C", "C", "N", "O"], ["C", "C", "N", "O"]) == 0.0
    assert type_tv(["C", "C"], ["N", "N"]) == 1.0
    assert type_tv(["C", "N"], ["C", "C", "C", "N"]) == pytest.approx(0.25)
    assert math.isnan(type_tv([], ["C"]))


@needs_qm9
def test_fcd_is_zero_against_itself_and_large_for_shuffled_atoms(qm9_rows, tmp_path) -> None:
    smiles = [canonical(s) for _, s in qm9_rows[::200]]  # 655 molecules
    same, digest = fcd(smiles, smiles, tmp_path)
    assert abs(same) < 1e-2 and len(digest) == 64
    rng = random.Random(0)
    shuffled = []
    for s in smiles:
        graph = smiles_to_graph(s)
        types = [t for _, t in graph.nodes(data="type")]
        rng.shuffle(types)
        heavy = ["F" if t == "C" else t for t in types]  # and no carbon skeleton left
        nx.set_node_attributes(graph, dict(zip(graph.nodes, heavy, strict=True)), "type")
        shuffled.append(written_smiles(graph))
    far, _ = fcd(shuffled, smiles, tmp_path)
    near, _ = fcd(smiles[: len(smiles) // 2], smiles[len(smiles) // 2 :], tmp_path)
    assert far > 4 * near and far > 10  # near: two halves of one set, small-sample bias
    assert len(list(tmp_path.glob("test-*.safetensors"))) == 2  # one file a reference set


@needs_qm9
def test_qm9_trains_samples_and_evaluates_through_the_cli(qm9_rows, tmp_path: Path) -> None:
    """A 900-molecule copy of QM9 under --data-root: train, samples.smi + grid.png, the metric."""
    root, run = tmp_path / "qm9", tmp_path / "run"
    root.mkdir()
    picked = qm9_rows[::145]
    for part, name in enumerate(qm9.FILES):
        lines = ["Index,SMILES", *(f'{i},"{s}"' for i, s in picked[part::3])]
        (root / name).write_text("\n".join(lines) + "\n")
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(entry_point, name="graph")

    def lcmd(*args: object) -> None:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([str(a) for a in args], pm=pm)
        assert code == 0, err.getvalue()

    lcmd("train", "--plugin", "graph", "--data", "qm9", "--data-root", root, "--out", run,
         "--max-steps", 20, "--set", "model.width=32", "--set", "model.depth=1",
         "--set", "sample.num_samples=16", "--set", "train.global_batch_size=16",
         "--no-progress")  # fmt: skip
    lcmd("eval", run, "--no-progress")
    written = next(run.glob("samples/eval-*/samples.smi")).read_text().splitlines()
    assert len(written) == 16 and any(run.glob("samples/eval-*/grid.png"))
    report = json.loads((run / "metrics.json").read_text())
    metrics = report["metrics"]
    assert 0 <= metrics["molecules/valid"] <= 1 and "molecules/atom_tv" in metrics
    assert not any(k.startswith(("mmd/", "vun/")) for k in metrics)
    protocol = report["protocol"]["metrics"]["molecules"]
    assert len(protocol["fcd"]["chemnet_sha256"]) == 64
