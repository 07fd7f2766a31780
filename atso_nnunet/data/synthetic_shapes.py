"""Shapes of the synthetic generator in normalised coordinates (see :mod:`atso_nnunet.data.synthetic`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np


# ----------------------------------------------------------------------------------------------
# Geometry helpers (normalised coordinates)


@dataclass
class _Grid:
    """Voxel-centre coordinates in normalised units, broadcastable to (z, y, x)."""

    shape_zyx: Tuple[int, int, int]
    spacing_xyz: Tuple[float, float, float]
    half: float                      # mm per normalised unit
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    z: np.ndarray = field(repr=False)

    @classmethod
    def of(cls, shape_xyz: Tuple[int, int, int], spacing_xyz: Tuple[float, float, float]) -> "_Grid":
        half = shape_xyz[0] * spacing_xyz[0] / 2.0
        axes = [((np.arange(n) + 0.5) * s - n * s / 2.0) / half for n, s in zip(shape_xyz, spacing_xyz)]
        x, y, z = (a.astype(np.float32) for a in axes)
        return cls(tuple(reversed(shape_xyz)), spacing_xyz, half, x[None, None, :], y[None, :, None], z[:, None, None])

    @property
    def z_half(self) -> float:
        """Half the z extent in normalised units."""
        return self.shape_zyx[0] * self.spacing_xyz[2] / 2.0 / self.half

    def box(self, lo: np.ndarray, hi: np.ndarray) -> Tuple[slice, slice, slice]:
        """Index slices (z, y, x) of the voxels whose centres may lie in [lo, hi] (x, y, z)."""
        out = []
        for axis, coords in ((2, self.z), (1, self.y), (0, self.x)):
            c = coords.ravel()
            i0 = int(np.searchsorted(c, lo[axis], side="left"))
            i1 = int(np.searchsorted(c, hi[axis], side="right"))
            out.append(slice(max(i0 - 1, 0), min(i1 + 1, c.size)))
        return tuple(out)

    def sub(self, box: Tuple[slice, slice, slice]):
        """Coordinates (x, y, z) restricted to ``box``."""
        return self.x[:, :, box[2]], self.y[:, box[1], :], self.z[box[0], :, :]


def _ellipsoid(grid: _Grid, center, semi, rough: Optional[np.ndarray] = None) -> np.ndarray:
    """Boolean mask of an axis-aligned ellipsoid (normalised units); ``rough`` bends its surface."""
    r2 = (((grid.x - center[0]) / semi[0]) ** 2 + ((grid.y - center[1]) / semi[1]) ** 2
          + ((grid.z - center[2]) / semi[2]) ** 2)
    if rough is not None:
        r2 = r2 + rough
    return r2 <= 1.0


def _cylinder(grid: _Grid, center_xy, semi_xy, z_range=(-np.inf, np.inf)) -> np.ndarray:
    """Boolean mask of a z-aligned elliptic cylinder between ``z_range``."""
    disk = ((grid.x - center_xy[0]) / semi_xy[0]) ** 2 + ((grid.y - center_xy[1]) / semi_xy[1]) ** 2 <= 1.0
    zin = (grid.z >= z_range[0]) & (grid.z <= z_range[1])
    return disk & zin


def _bezier(ctrl: np.ndarray, n: int = 17) -> np.ndarray:
    """``n`` points (n, 3) on the cubic Bezier curve with control points ``ctrl`` (4, 3)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3 * ctrl[0] + 3 * (1 - t) ** 2 * t * ctrl[1] + 3 * (1 - t) * t ** 2 * ctrl[2]
            + t ** 3 * ctrl[3])


def _tube_distance(grid: _Grid, points: np.ndarray, reach: float):
    """Distance to a polyline and its curve parameter, in the box ``reach`` around it.

    Returns:
        (box, dist, t): index slices (z, y, x), distance (normalised units) and the parameter in
        [0, 1] of the nearest curve point, both shaped like the box.
    """
    box = grid.box(points.min(axis=0) - reach, points.max(axis=0) + reach)
    x, y, z = grid.sub(box)
    shape = (z.shape[0], y.shape[1], x.shape[2])
    best = np.full(shape, np.inf, np.float32)
    tpar = np.zeros(shape, np.float32)
    n_seg = len(points) - 1
    for k in range(n_seg):
        a, ab = points[k], points[k + 1] - points[k]
        dx, dy, dz = x - a[0], y - a[1], z - a[2]
        s = np.clip((dx * ab[0] + dy * ab[1] + dz * ab[2]) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        d2 = (dx - s * ab[0]) ** 2 + (dy - s * ab[1]) ** 2 + (dz - s * ab[2]) ** 2
        closer = d2 < best
        best = np.where(closer, d2, best)
        tpar = np.where(closer, (k + s) / n_seg, tpar)
    return box, np.sqrt(best), tpar


def _smooth_noise(rng: np.random.Generator, shape_zyx, spacing_norm_zyx, cell: float) -> np.ndarray:
    """Low-frequency noise (unit variance) with correlation length ``cell`` (normalised units).

    White noise on a coarse lattice (one node per ``cell``) is interpolated with Gaussian weights,
    one axis at a time (separable products): smooth blobs at a fraction of the cost of
    ``ndimage.zoom``.
    """
    coarse = [max(2, int(math.ceil(n * s / cell)) + 1) for n, s in zip(shape_zyx, spacing_norm_zyx)]
    field_ = rng.standard_normal(coarse).astype(np.float32)
    wz, wy, wx = (_interpolation_weights(n, c) for n, c in zip(shape_zyx, coarse))
    # einsum without ``optimize`` runs numpy's own single-threaded loops: no BLAS threads fighting
    # for the cores, and the same sums on every BLAS build.
    field_ = np.einsum("zc,cba->zba", wz, field_)
    field_ = np.einsum("yb,zba->zya", wy, field_)
    field_ = np.einsum("xa,zya->zyx", wx, field_)
    std = float(field_.std())
    return field_ / std if std > 0 else field_


def _interpolation_weights(n: int, c: int, width: float = 0.6) -> np.ndarray:
    """(n, c) Gaussian interpolation weights from ``c`` lattice nodes to ``n`` voxel centres."""
    pos = (np.arange(n) + 0.5) * (c - 1) / n
    w = np.exp(-0.5 * ((pos[:, None] - np.arange(c)[None, :]) / width) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
