"""Molecule metrics as the field reports them: validity, uniqueness, novelty, FCD, type TVs.

- `valid`: fraction of samples whose molecule passes RDKit's sanitisation as generated (no
  valence correction, no charge fixing); `valid_largest_fragment`: the same for each sample's
  largest connected fragment; `connected`: fraction with one fragment.
- `unique`: distinct canonical SMILES among the valid samples ÷ valid samples; `novel`: the
  fraction of those distinct SMILES absent from the train split (canonical SMILES).
- `fcd`: Fréchet ChemNet Distance (the `fcd` package's ChemNet, loaded as weights only) between
  the valid samples' SMILES and the whole test split; the test split's activation mean and
  covariance are cached under the run's metric cache, keyed by the SHA-256 of the test SMILES
  and of the weights.
- `atom_tv`, `bond_tv`: total-variation distance ½ Σ |p − q| between the atom-type
  distribution of all sampled atoms and that of the test split, and the same for bond types
  (single, double, triple) over the existing bonds.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from lcmd_core.plugins import MetricContext
from lcmd_graph.molecules import canonical_smiles, largest_fragment

CHEMNET = "ChemNet_v0.13_pretrained.pt"  # inside the fcd package
FCD_CACHE = "fcd"  # subdirectory of the run's metric cache


def type_tv(samples: Iterable[str], references: Iterable[str]) -> float:
    """Total-variation distance between the empirical distributions of two lists of labels."""
    p, q = Counter(samples), Counter(references)
    n_p, n_q = sum(p.values()), sum(q.values())
    if not n_p or not n_q:
        return math.nan
    return 0.5 * sum(abs(p[k] / n_p - q[k] / n_q) for k in p.keys() | q.keys())


def atom_types(graphs: Sequence[nx.Graph]) -> list[str]:
    return [str(t) for g in graphs for _, t in g.nodes(data="type")]


def bond_types(graphs: Sequence[nx.Graph]) -> list[str]:
    return [str(t) for g in graphs for _, _, t in g.edges(data="type")]


def validity_uniqueness_novelty(
    samples: Sequence[nx.Graph], train_smiles: set[str]
) -> tuple[dict[str, float], list[str]]:
    """The fractions above, and the canonical SMILES of the valid samples (in sample order)."""
    if not samples:
        return {}, []
    smiles = [canonical_smiles(g) for g in samples]
    valid = [s for s in smiles if s is not None]
    largest = [canonical_smiles(largest_fragment(g)) is not None for g in samples]
    connected = [g.number_of_nodes() > 0 and nx.is_connected(g) for g in samples]
    distinct = set(valid)
    out = {
        "valid": len(valid) / len(samples),
        "valid_largest_fragment": float(np.mean(largest)),
        "connected": float(np.mean(connected)),
        "unique": len(distinct) / len(valid) if valid else math.nan,
        "novel": len(distinct - train_smiles) / len(distinct) if distinct else math.nan,
    }
    return out, valid


def load_chemnet() -> tuple[torch.nn.Module, str]:
    """The fcd package's ChemNet, from its weights file read as tensors only, and the file's
    SHA-256."""
    from fcd.utils import load_imported_model

    resource = importlib.resources.files("fcd") / CHEMNET
    with importlib.resources.as_file(resource) as path:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        config = torch.load(path, weights_only=True, map_location="cpu")
    return load_imported_model(config).eval(), digest


def chemnet_stats(model: torch.nn.Module, smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ChemNet's penultimate activations over SMILES strings."""
    from fcd.fcd import get_predictions

    acts = get_predictions(model, list(smiles), n_jobs=0, device="cpu").astype(np.float64)
    return acts.mean(axis=0), np.cov(acts.T)


def _reference_stats(
    model: torch.nn.Module, digest: str, smiles: Sequence[str], cache: Path
) -> tuple[np.ndarray, np.ndarray]:
    key = hashlib.sha256(("\n".join(smiles) + digest).encode()).hexdigest()[:24]
    path = cache / f"test-{key}.safetensors"
    if path.is_file():
        try:
            stored = load_file(path)
            return stored["mu"], stored["sigma"]
        except (SafetensorError, KeyError, OSError):
            path.unlink()  # a damaged cache is recomputed, never trusted
    mu, sigma = chemnet_stats(model, smiles)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"mu": mu, "sigma": sigma}, tmp)
    tmp.replace(path)
    return mu, sigma


def fcd(
    sample_smiles: Sequence[str], reference_smiles: Sequence[str], cache: Path | None = None
) -> tuple[float, str]:
    """FCD between two SMILES lists (the reference's statistics cached under `cache`) and the
    ChemNet weights' SHA-256; NaN with fewer than two samples."""
    from fcd.utils import calculate_frechet_distance

    model, digest = load_chemnet()
    if len(sample_smiles) < 2 or len(reference_smiles) < 2:
        return math.nan, digest
    if cache is None:
        mu_ref, sigma_ref = chemnet_stats(model, reference_smiles)
    else:
        mu_ref, sigma_ref = _reference_stats(model, digest, reference_smiles, cache)
    mu, sigma = chemnet_stats(model, sample_smiles)
    return calculate_frechet_distance(mu, sigma, mu_ref, sigma_ref), digest


def molecule_metrics(
    samples: list[nx.Graph], references: list[nx.Graph], codec: Any, context: MetricContext
) -> dict[str, float]:
    """Every metric above for a molecule data set (the plugin calls it for codec `molecule`)."""
    train = {s for s in map(canonical_smiles, context.load("train")[0]) if s is not None}
    test = context.load("test")[0]
    out, valid = validity_uniqueness_novelty(samples, train)
    test_smiles = sorted(s for s in map(canonical_smiles, test) if s is not None)
    out["fcd"], digest = fcd(valid, test_smiles, context.cache_dir / FCD_CACHE)
    out["atom_tv"] = type_tv(atom_types(samples), atom_types(test))
    out["bond_tv"] = type_tv(bond_types(samples), bond_types(test))
    context.protocol.update(
        {
            "validity": "RDKit SanitizeMol of the generated molecule, no correction",
            "uniqueness": "distinct canonical SMILES / valid samples",
            "novelty": f"distinct valid SMILES not among the {len(train)} train molecules",
            "fcd": {
                "reference": f"test split, {len(test_smiles)} molecules",
                "samples": len(valid),
                "chemnet": CHEMNET,
                "chemnet_sha256": digest,
            },
            "type_tv": "test split; bonds: single/double/triple among existing bonds",
        }
    )
    return out
