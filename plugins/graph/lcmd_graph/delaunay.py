"""Delaunay triangulation of points in the plane (Bowyer–Watson), without scipy."""

from __future__ import annotations

import numpy as np


def _circumcircle(p: np.ndarray, a: int, b: int, c: int) -> tuple[float, float, float]:
    """Centre x, y and squared radius of the circle through points a, b, c."""
    (ax, ay), (bx, by), (cx, cy) = p[a], p[b], p[c]
    d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    a2, b2, c2 = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
    ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
    uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    return ux, uy, (ax - ux) ** 2 + (ay - uy) ** 2


def delaunay_edges(points: np.ndarray) -> set[tuple[int, int]]:
    """Edges (i < j) of the Delaunay triangulation of points[n, 2] in general position.

    Bowyer–Watson: insert points one at a time into a triangulation seeded by a super-triangle,
    removing the triangles whose circumcircle contains the new point and re-fanning the hole.
    O(n²) for n points, ample for the 64-point planar graphs.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if pts.ndim != 2 or pts.shape[1] != 2 or n < 3:
        raise ValueError(f"delaunay_edges needs points[n >= 3, 2], got shape {pts.shape}")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, span = (lo + hi) / 2, float((hi - lo).max()) or 1.0
    # Far enough that no hull edge is lost to a circumcircle through a super-triangle vertex.
    ring = centre + 1e4 * span * np.array([[-1.0, -1.0], [1.0, -1.0], [0.0, 1.0]])
    all_pts = np.vstack([pts, ring])
    triangles = {(n, n + 1, n + 2): _circumcircle(all_pts, n, n + 1, n + 2)}
    for i in range(n):
        x, y = all_pts[i]
        bad = [t for t, (ux, uy, r2) in triangles.items() if (x - ux) ** 2 + (y - uy) ** 2 < r2]
        # The hole's boundary: edges of bad triangles that no other bad triangle shares.
        count: dict[tuple[int, int], int] = {}
        for a, b, c in bad:
            for edge in ((a, b), (b, c), (a, c)):
                key = (min(edge), max(edge))
                count[key] = count.get(key, 0) + 1
            del triangles[(a, b, c)]
        for (a, b), k in count.items():
            if k == 1:
                tri = tuple(sorted((a, b, i)))
                triangles[tri] = _circumcircle(all_pts, *tri)
    edges = set()
    for a, b, c in triangles:
        if c < n:  # sorted, so c < n means no vertex of the super-triangle
            edges.update({(a, b), (b, c), (a, c)})
    return edges
