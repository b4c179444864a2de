"""Feature-space statistics for sample quality: Fréchet distance, k-NN precision/recall, IS.

Everything is computed in torch float64 on the CPU (no scipy). Inputs may be numpy arrays or
tensors; features are `[N, D]`, class probabilities `[N, C]`.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor
CDIST_ROWS = 1024  # rows of the distance matrix computed at a time


def _f64(x: ArrayLike) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu", torch.float64)


def feature_stats(features: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean `[D]` and unbiased covariance `[D, D]` (rows are observations) of `features [N, D]`."""
    x = _f64(features)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"feature_stats needs features [N >= 2, D], got {tuple(x.shape)}")
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def _root_eigenvalues(values: torch.Tensor) -> torch.Tensor:
    """Square roots of a PSD matrix's eigenvalues, those within round-off of 0 set to 0.

    Eigenvalues below `D * eps * max|eigenvalue|` are round-off of zero (as in `pinv`); their
    square roots would turn an error of eps into one of sqrt(eps), so they count as 0.
    """
    tolerance = len(values) * torch.finfo(values.dtype).eps * values.abs().max()
    return torch.where(values > tolerance, values, 0.0).sqrt()


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh((sigma + sigma.T) / 2)
    return (vectors * _root_eigenvalues(values)) @ vectors.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    `|mu1 - mu2|² + Tr S1 + Tr S2 - 2 Tr sqrt(S1 S2)`. `S1 S2` is not symmetric, but it is similar
    to `A = sqrt(S1) S2 sqrt(S1)`, which is symmetric PSD, so `Tr sqrt(S1 S2)` is the sum of the
    square roots of `A`'s eigenvalues. Both square roots come from symmetric eigendecompositions
    (`eigh`, real by construction) with eigenvalues within round-off of 0 set to 0, so a singular
    covariance (fewer samples than dimensions) needs no offset and gives no complex parts, unlike
    `scipy.linalg.sqrtm` on `S1 S2`. Identical inputs give ~1e-12 relative to the traces (possibly
    a tiny negative number).
    """
    m1, m2, s1, s2 = map(_f64, (mu1, mu2, sigma1, sigma2))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (len(m1), len(m1)):
        raise ValueError(
            f"mismatched shapes: mu {tuple(m1.shape)}, {tuple(m2.shape)}; "
            f"sigma {tuple(s1.shape)}, {tuple(s2.shape)}"
        )
    root1 = _psd_sqrt(s1)
    inner = root1 @ s2 @ root1
    tr_covmean = _root_eigenvalues(torch.linalg.eigvalsh((inner + inner.T) / 2)).sum()
    diff = m1 - m2
    return float(diff @ diff + s1.trace() + s2.trace() - 2 * tr_covmean)


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of `x` to its k-th nearest other row (the row itself excluded)."""
    radii = [
        torch.cdist(x[i : i + CDIST_ROWS], x).kthvalue(k + 1, dim=1).values
        for i in range(0, len(x), CDIST_ROWS)
    ]
    return torch.cat(radii)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of `points` inside at least one ball (centre, radius); boundaries count."""
    inside = [
        (torch.cdist(points[i : i + CDIST_ROWS], centres) <= radii).any(dim=1)
        for i in range(0, len(points), CDIST_ROWS)
    ]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of `fake` against `real`.

    Each set's manifold is the union of balls around its points reaching their k-th nearest
    neighbour in the same set. Precision: the fraction of fake points inside the real manifold;
    recall: the fraction of real points inside the fake manifold.
    """
    r, f = _f64(real), _f64(fake)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"features must be [N, D] alike, got {tuple(r.shape)}, {tuple(f.shape)}")
    if min(len(r), len(f)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} points in each set")
    precision = _coverage(f, r, _kth_neighbour_radii(r, k))
    recall = _coverage(r, f, _kth_neighbour_radii(f, k))
    return precision, recall


def inception_score(probs: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """Inception Score `exp E_x KL(p(y|x) || p(y))`: mean and (population) std over `splits`.

    `probs [N, C]` are class probabilities; the N rows are cut into `splits` consecutive parts,
    each with its own marginal `p(y)`, as in the reference implementation.
    """
    p = _f64(probs)
    if p.ndim != 2 or len(p) < splits:
        raise ValueError(f"inception_score needs probs [N >= {splits}, C], got {tuple(p.shape)}")
    scores = []
    for part in torch.tensor_split(p, splits):
        marginal = part.mean(0, keepdim=True)
        kl = (torch.xlogy(part, part) - torch.xlogy(part, marginal)).sum(1)
        scores.append(kl.mean().exp())
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(correction=0))
