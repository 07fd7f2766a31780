"""Synthetic abdominal CT with a pancreas-like organ: the embedded default dataset.

Each case is drawn from a seeded generator (``np.random.default_rng([seed, case, domain])``),
so the same configuration always gives bit-identical files. The anatomy is built in
*normalised* coordinates (the in-plane half-width of the field of view is 1, the same unit is
used along z), which keeps the body filling the field of view for any volume size; the spacing
then only says how many millimetres that field of view covers.

What makes the task non-trivial:

- Hounsfield-unit tissues: air (-1000), subcutaneous and visceral fat (~-100), muscle (~55),
  bone (cortex ~700, marrow ~250, discs ~80), liver, spleen, kidneys, stomach, bowel loops with
  gas, aorta, IVC, superior mesenteric artery and vein, splenic vein.
- The organ (label 1) is a tube along a random cubic Bezier curve (head by the duodenum, neck in
  front of the mesenteric vessels, tail at the splenic hilum) whose radius tapers head -> tail
  and whose surface is lobulated by low-frequency noise. It sits in soft tissue (duodenum,
  jejunal loops, splenic vein) whose intensity is within a few tens of HU of its own.
- Partial-volume blur of the HU volume, in-plane correlated noise, anisotropic spacing,
  per-case variation of body habitus, organ position, size and shape and tissue enhancement.

Two domains:

- ``"A"`` (NIH-like): venous phase, 0.8 x 0.8 x 2.5 mm, no lesions, labels {0, 1}.
- ``"B"`` (MSD Task07-like): pancreatic (late arterial) phase with other vessel and organ HU,
  more noise, 0.8 x 0.8 x 5 mm, a scanner calibration offset, and 1-2 hypodense lesions inside
  the organ labelled 2 (MSD labels tumour 2, pancreas 1).

Example:
    >>> cfg = SyntheticConfig(domain="B", shape=(24, 24, 8), seed=3)
    >>> image, label, geometry = generate_case(cfg, 0)
    >>> image.shape, image.dtype, sorted(set(label.ravel()))   # doctest: +SKIP
    ((8, 24, 24), dtype('int16'), [0, 1, 2])
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from atso_nnunet.data import layout
from atso_nnunet.data.materialize import staged_directory
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, write_array, write_json

logger = logging.getLogger(__name__)

DOMAINS = ("A", "B")
GENERATOR_VERSION = 1

# Per-domain defaults of the options a user may leave unset.
DOMAIN_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "A": {"shape": (160, 160, 64), "spacing": (0.8, 0.8, 2.5), "noise_sigma": 12.0, "hu_offset": 0.0,
          "lesions": False},
    "B": {"shape": (160, 160, 32), "spacing": (0.8, 0.8, 5.0), "noise_sigma": 22.0, "hu_offset": 30.0,
          "lesions": True},
}

# Mean tissue HU per contrast phase (A: portal venous, B: pancreatic / late arterial).
_TISSUE_HU: Dict[str, Dict[str, float]] = {
    "A": {"fat": -100, "muscle": 55, "cortex": 700, "marrow": 250, "disc": 80, "csf": 15, "table": 150,
          "liver": 108, "spleen": 112, "kidney_cortex": 165, "kidney_medulla": 150, "stomach_wall": 70,
          "stomach_content": 25, "bowel": 80, "duodenum": 78, "gas": -850, "aorta": 165, "ivc": 155,
          "sma": 160, "smv": 175, "splenic_vein": 170, "pancreas": 95, "lesion": 45},
    "B": {"fat": -100, "muscle": 55, "cortex": 700, "marrow": 250, "disc": 80, "csf": 15, "table": 150,
          "liver": 78, "spleen": 130, "kidney_cortex": 195, "kidney_medulla": 95, "stomach_wall": 75,
          "stomach_content": 25, "bowel": 82, "duodenum": 80, "gas": -850, "aorta": 280, "ivc": 95,
          "sma": 270, "smv": 125, "splenic_vein": 135, "pancreas": 95, "lesion": 45},
}
_DOMAIN_CODE = {"A": 1, "B": 2}
_DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


@dataclass(frozen=True)
class SyntheticConfig:
    """Options of the synthetic CT generator; ``None`` fields take the domain's default.

    Attributes:
        domain: ``"A"`` (NIH-like, venous, no lesions) or ``"B"`` (MSD-like, arterial, lesions).
        shape: volume size (x, y, z) in voxels; default (160, 160, 64) for A, (160, 160, 32) for
            B (thicker slices over the same length). At least 16 x 16 x 4.
        spacing: voxel size (x, y, z) in mm; default (0.8, 0.8, 2.5) for A, (0.8, 0.8, 5.0) for B.
        seed: base seed (>= 0); case ``i`` draws from ``np.random.default_rng([seed, i, domain])``.
        noise_sigma: standard deviation of the image noise in HU; default 12 (A), 22 (B).
        hu_offset: scanner calibration offset added to every voxel, HU; default 0 (A), 30 (B).
        lesions: put 1-2 hypodense lesions (label 2) inside the organ; default False (A), True (B).
    """

    domain: str = "A"
    shape: Optional[Tuple[int, int, int]] = None
    spacing: Optional[Tuple[float, float, float]] = None
    seed: int = 0
    noise_sigma: Optional[float] = None
    hu_offset: Optional[float] = None
    lesions: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise InputError(f"SyntheticConfig.domain must be one of {list(DOMAINS)}, got {self.domain!r}")
        defaults = DOMAIN_DEFAULTS[self.domain]
        for name in ("shape", "spacing", "noise_sigma", "hu_offset", "lesions"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])

        shape = _triple(self.shape, "shape")
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shape):
            raise InputError(f"SyntheticConfig.shape must be three integers (x, y, z), got {self.shape!r}")
        if shape[0] < 16 or shape[1] < 16 or shape[2] < 4:
            raise InputError(f"SyntheticConfig.shape (x, y, z) must be at least (16, 16, 4), got {tuple(shape)}")
        object.__setattr__(self, "shape", tuple(int(v) for v in shape))

        spacing = _triple(self.spacing, "spacing")
        if not all(_is_number(v) and 0 < float(v) < 100 for v in spacing):
            raise InputError(f"SyntheticConfig.spacing must be three numbers in (0, 100) mm, got {self.spacing!r}")
        object.__setattr__(self, "spacing", tuple(float(v) for v in spacing))

        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"SyntheticConfig.seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if not _is_number(self.noise_sigma) or not 0 <= float(self.noise_sigma) <= 500:
            raise InputError(f"SyntheticConfig.noise_sigma must be a number in [0, 500] HU, got {self.noise_sigma!r}")
        object.__setattr__(self, "noise_sigma", float(self.noise_sigma))
        if not _is_number(self.hu_offset) or not -500 <= float(self.hu_offset) <= 500:
            raise InputError(f"SyntheticConfig.hu_offset must be a number in [-500, 500] HU, got {self.hu_offset!r}")
        object.__setattr__(self, "hu_offset", float(self.hu_offset))
        if not isinstance(self.lesions, (bool, np.bool_)):
            raise InputError(f"SyntheticConfig.lesions must be true or false, got {self.lesions!r}")
        object.__setattr__(self, "lesions", bool(self.lesions))

    @property
    def labels(self) -> Dict[str, int]:
        """nnU-Net ``labels`` of the cases this configuration generates."""
        labels = {"background": 0, "pancreas": 1}
        if self.lesions:
            labels["tumour"] = 2
        return labels

    def to_dict(self) -> Dict[str, Any]:
        """The resolved options as plain JSON types."""
        d = asdict(self)
        d["shape"], d["spacing"] = list(self.shape), list(self.spacing)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SyntheticConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise an InputError naming them."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown SyntheticConfig option(s) {unknown}; known: {sorted(known)}")
        kwargs = dict(d)
        for k in ("shape", "spacing"):
            if isinstance(kwargs.get(k), list):
                kwargs[k] = tuple(kwargs[k])
        return cls(**kwargs)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _triple(value: Any, name: str) -> tuple:
    try:
        values = tuple(value)
    except TypeError:
        values = ()
    if len(values) != 3:
        raise InputError(f"SyntheticConfig.{name} must have three values (x, y, z), got {value!r}")
    return values


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


# ----------------------------------------------------------------------------------------------
# The generator


def generate_case(config: SyntheticConfig, case_index: int) -> Tuple[np.ndarray, np.ndarray, Geometry]:
    """Generate one synthetic CT case.

    Args:
        config: generator options.
        case_index: index of the case (>= 0); with ``config.seed`` it fixes every random draw.

    Returns:
        ``(image, label, geometry)``: int16 HU volume and uint8 label volume, both (z, y, x), and
        the :class:`~atso_nnunet.io.Geometry` (SimpleITK x, y, z order) to write them with.
        Label 1 is the organ, label 2 (only with ``config.lesions``) a lesion inside it.

    Raises:
        InputError: ``case_index`` is not an integer >= 0.
    """
    if not isinstance(case_index, (int, np.integer)) or isinstance(case_index, bool) or case_index < 0:
        raise InputError(f"case_index must be an integer >= 0, got {case_index!r}")
    rng = np.random.default_rng([config.seed, int(case_index), _DOMAIN_CODE[config.domain]])
    grid = _Grid.of(config.shape, config.spacing)
    # Enhancement varies per case mostly as a whole (contrast timing), a little per tissue.
    timing = rng.normal(0.0, 6.0)
    hu = {k: v + (timing if v > 0 else 0.0) + rng.normal(0.0, 3.0) for k, v in _TISSUE_HU[config.domain].items()}
    spacing_norm_zyx = tuple(s / grid.half for s in reversed(config.spacing))
    texture = _smooth_noise(rng, grid.shape_zyx, spacing_norm_zyx, cell=0.06)
    img = np.full(grid.shape_zyx, -1000.0, np.float32)

    def paint(mask: np.ndarray, value: float, amp: float = 0.0, box=None) -> None:
        target = img if box is None else img[box]
        if amp:
            tex = texture if box is None else texture[box]
            target[mask] = value + amp * tex[mask]
        else:
            target[mask] = value

    # Body habitus: outline, subcutaneous fat, muscle wall, visceral cavity.
    shift = rng.normal(0.0, 0.03, size=2)
    cy = 0.04 + shift[1]
    ax = rng.uniform(0.84, 0.94) * (1 + 0.04 * np.sin(2.1 * grid.z + rng.uniform(0, 6.3)))
    ay = rng.uniform(0.62, 0.72) * (1 + 0.03 * np.sin(1.7 * grid.z + rng.uniform(0, 6.3)))
    fat_t = rng.uniform(0.04, 0.13)
    wall_t = rng.uniform(0.035, 0.05)
    ring = np.sqrt((grid.x / ax) ** 2 + ((grid.y - cy) / ay) ** 2)   # 1 on the skin
    body = ring <= 1.0
    wall_outer = ring <= 1.0 - fat_t / ay
    cavity = ring <= 1.0 - (fat_t + wall_t) / ay
    table_y = cy + ay.min() + 0.05
    paint(_cylinder(grid, (0.0, table_y + 0.015), (0.85, 0.015)) & ~body, hu["table"])
    paint(body, hu["fat"], 8)
    paint(wall_outer, hu["muscle"], 6)
    paint(cavity, hu["fat"], 8)

    # Spine, spinal canal, paraspinal and psoas muscles, ribs.
    spine_y = cy + 0.62 * float(ay.mean())
    r_vb = rng.uniform(0.10, 0.13)
    vb = _cylinder(grid, (shift[0] * 0.3, spine_y), (r_vb, r_vb * 0.85))
    period, phase = rng.uniform(0.24, 0.3), rng.uniform(0, 1)
    disc = ((grid.z / period + phase) % 1.0) < 0.22
    canal_y = spine_y + r_vb * 0.85 + 0.05
    paint(_cylinder(grid, (0.0, spine_y + 0.55 * r_vb), (0.07, 0.2)) & ~cavity, hu["muscle"], 6)
    paraspinal = (_cylinder(grid, (-0.17, canal_y + 0.06), (0.12, 0.09))
                  | _cylinder(grid, (0.17, canal_y + 0.06), (0.12, 0.09)))
    paint(paraspinal & body, hu["muscle"], 6)
    psoas_r = 0.05 + 0.03 * np.clip(-grid.z, 0.0, 1.0)
    psoas = ((np.abs(grid.x) - 0.15) ** 2 + (grid.y - spine_y + 0.02) ** 2) <= psoas_r ** 2
    paint(psoas, hu["muscle"], 6)
    posterior = _cylinder(grid, (0.0, canal_y), (0.09, 0.075))
    paint(posterior & ~disc, hu["cortex"], 30)
    paint(_cylinder(grid, (0.0, canal_y), (0.045, 0.04)), hu["csf"])
    paint(vb & disc, hu["disc"], 5)
    paint(vb & ~disc, hu["cortex"], 30)
    paint(_cylinder(grid, (shift[0] * 0.3, spine_y), (r_vb - 0.02, r_vb * 0.85 - 0.02)) & ~disc, hu["marrow"], 25)
    angle = np.arctan2(grid.y - cy, grid.x)
    rib_phase = rng.uniform(0, 6.3)
    ribs = (wall_outer & ~cavity & (grid.z > -0.4 - 0.5 * np.abs(np.sin(angle)))
            & (np.sin(9.0 * grid.z + 7.0 * np.abs(angle) + rib_phase) > 0.6) & (np.abs(np.cos(angle)) > 0.3))
    paint(ribs, hu["cortex"], 40)

    # Bowel loops fill much of the cavity; some hold gas.
    bowel_field = _smooth_noise(rng, grid.shape_zyx, spacing_norm_zyx, cell=0.12)
    bowel = cavity & (bowel_field > -0.2) & (grid.y < spine_y - 0.05)
    paint(bowel, hu["bowel"], 12)
    gas = bowel & (texture > 2.0)
    paint(gas, hu["gas"])

    # Pancreas centre line: head by the duodenum, neck in front of the mesenteric vessels,
    # body over the aorta, tail towards the splenic hilum (higher, i.e. larger z).
    size = rng.uniform(0.85, 1.15)
    z_head = rng.uniform(-0.3, -0.12)
    z_tail = z_head + rng.uniform(0.35, 0.6)
    ctrl = np.array([[-0.2, 0.02, z_head], [-0.02, -0.12, z_head + 0.1], [0.3, -0.02, z_tail - 0.05],
                     [0.52, 0.2, z_tail]])
    ctrl[:, :2] += shift
    ctrl += rng.normal(0.0, 0.035, size=ctrl.shape)
    centre = _bezier(ctrl)
    r_head, r_tail = rng.uniform(0.09, 0.12) * size, rng.uniform(0.045, 0.06) * size
    neck = _bezier(ctrl, 5)[1]

    # Solid organs around it.
    liver_rough = 0.25 * texture
    paint(_ellipsoid(grid, (-0.42 + shift[0], -0.02 + shift[1], 0.6 + rng.normal(0, 0.05)),
                     np.array([0.48, 0.55, 1.0]) * rng.uniform(0.9, 1.1), liver_rough) & cavity,
          hu["liver"], 6)
    paint(_ellipsoid(grid, (0.55 + shift[0], spine_y - 0.2, 0.45 + rng.normal(0, 0.05)),
                     np.array([0.16, 0.26, 0.4]) * rng.uniform(0.85, 1.15), liver_rough) & cavity,
          hu["spleen"], 10)
    stomach_c = (0.3 + shift[0], -0.3 + shift[1], 0.55 + rng.normal(0, 0.05))
    stomach_s = np.array([0.25, 0.22, 0.45]) * rng.uniform(0.85, 1.15)
    stomach = _ellipsoid(grid, stomach_c, stomach_s) & cavity
    lumen = _ellipsoid(grid, stomach_c, stomach_s - 0.04) & cavity
    paint(stomach, hu["stomach_wall"], 6)
    paint(lumen, hu["stomach_content"], 6)
    paint(lumen & (grid.y < stomach_c[1] - 0.1), hu["gas"])
    for side in (-1, 1):
        kc = (0.36 * side, spine_y - 0.05, -0.3 + (0.15 if side > 0 else 0.0) + rng.normal(0, 0.05))
        ks = np.array([0.12, 0.17, 0.4]) * rng.uniform(0.85, 1.15)
        paint(_ellipsoid(grid, kc, ks) & cavity, hu["kidney_cortex"], 8)
        paint(_ellipsoid(grid, kc, ks * 0.6) & cavity, hu["kidney_medulla"], 8)

    # Peripancreatic soft tissue (jejunal loops, mesentery), duodenal C-loop and vessels.
    lobule_amp = rng.uniform(0.15, 0.3)
    margin = rng.uniform(0.07, 0.11)
    box, dist, tpar = _tube_distance(grid, centre, reach=r_head * (1 + 3 * lobule_amp) + margin + 0.02)
    radius = r_tail + (r_head - r_tail) * (1.0 - tpar) ** 1.5
    lobules = _smooth_noise(rng, dist.shape, spacing_norm_zyx, cell=0.05)
    organ_surface = radius * (1.0 + lobule_amp * lobules)
    cav_box = cavity[box]
    envelope = (dist <= organ_surface + margin) & cav_box
    fat_clefts = lobules < -1.6
    paint(envelope & ~fat_clefts, hu["bowel"], 10, box)

    head = centre[0]
    # C-loop: down the right side of the head, then under it towards the midline.
    duo_ctrl = np.array([[head[0] - 0.05, head[1] - 0.12, z_head + 0.24],
                         [head[0] - 0.24, head[1] + 0.04, z_head + 0.05],
                         [head[0] - 0.14, head[1] + 0.06, z_head - 0.3],
                         [head[0] + 0.25, head[1] + 0.03, z_head - 0.22]])
    duo_ctrl += rng.normal(0.0, 0.02, size=duo_ctrl.shape)
    duo_r = rng.uniform(0.045, 0.06)
    dbox, ddist, _ = _tube_distance(grid, _bezier(duo_ctrl), reach=duo_r)
    duodenum = np.zeros(grid.shape_zyx, bool)
    duodenum[dbox] = (ddist <= duo_r) & cavity[dbox]
    paint(duodenum, hu["duodenum"], 10)

    aorta_y = spine_y - r_vb * 0.85 - 0.08
    aorta = _cylinder(grid, (0.04 + shift[0] * 0.3, aorta_y), (0.065, 0.065))
    ivc = _cylinder(grid, (-0.14 + shift[0] * 0.3, aorta_y), (0.085, 0.06))
    smv_y = neck[1] + r_head * 0.8 + 0.04
    smv = _cylinder(grid, (neck[0] - 0.01, smv_y), (0.038, 0.035), (-np.inf, neck[2] + 0.05))
    sma = _cylinder(grid, (neck[0] + 0.05, (smv_y + aorta_y) / 2), (0.026, 0.026), (-np.inf, neck[2] + 0.12))
    paint(aorta, hu["aorta"], 5)
    paint(ivc, hu["ivc"], 5)
    paint(smv, hu["smv"], 5)
    paint(sma, hu["sma"], 5)
    vessels = aorta | ivc | smv | sma

    # The organ itself, carved by what it must not overlap.
    organ = np.zeros(grid.shape_zyx, bool)
    organ[box] = (dist <= organ_surface) & cav_box
    organ &= ~(vessels | duodenum)
    if not organ.any():
        # Slices thicker than the organ (tiny volumes): keep the one voxel nearest its centre line,
        # so every case has foreground.
        organ[box] = dist <= dist[cav_box].min() if cav_box.any() else dist <= dist.min()
        organ &= np.cumsum(organ.ravel()).reshape(organ.shape) == 1
    paint(organ, hu["pancreas"], 7)

    t_sv = np.linspace(0.3, 1.0, 9)
    idx = t_sv * (len(centre) - 1)
    sv_pts = np.stack([np.interp(idx, np.arange(len(centre)), centre[:, k]) for k in range(3)], axis=1)
    r_at = r_tail + (r_head - r_tail) * (1.0 - t_sv) ** 1.5
    sv_pts[:, 1] += r_at + 0.02
    sv_r = rng.uniform(0.025, 0.032)
    sbox, sdist, _ = _tube_distance(grid, sv_pts, reach=sv_r)
    splenic_vein = (sdist <= sv_r) & cavity[sbox] & ~organ[sbox]
    paint(splenic_vein, hu["splenic_vein"], 5, sbox)

    label = organ.astype(np.uint8)
    if config.lesions:
        _add_lesions(rng, grid, img, label, organ, box, dist, radius, hu)

    # Partial-volume blur, correlated noise, calibration offset.
    img = ndimage.gaussian_filter(img, sigma=(0.45, 0.6, 0.6), mode="nearest")
    if config.noise_sigma > 0:
        noise = rng.standard_normal(grid.shape_zyx, dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, sigma=(0.0, 0.7, 0.7), mode="wrap")
        noise *= config.noise_sigma / max(float(noise.std()), 1e-6)
        img += noise
    img += config.hu_offset + rng.normal(0.0, 3.0) * (config.hu_offset != 0)
    image = np.clip(np.rint(img), -1024, 3071).astype(np.int16)

    nx, ny, nz = config.shape
    sx, sy, sz = config.spacing
    origin = (round(-(nx - 1) * sx / 2, 3), round(-(ny - 1) * sy / 2, 3),
              round(-(nz - 1) * sz / 2 + float(rng.uniform(-40, 40)), 1))
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    geometry = Geometry(tuple(config.shape), tuple(config.spacing), origin, identity)
    return image, label, geometry


def _add_lesions(rng, grid: _Grid, img, label, organ, box, dist, radius, hu) -> None:
    """Paint 1-2 hypodense lesions (label 2) centred in the organ's core, clipped to the organ."""
    core = np.argwhere(organ[box] & (dist <= 0.6 * radius))
    if core.size == 0:
        core = np.argwhere(organ[box])
    if core.size == 0:
        return
    offset = np.array([box[0].start, box[1].start, box[2].start])
    for _ in range(int(rng.integers(1, 3))):
        k = tuple(core[int(rng.integers(len(core)))])
        zi, yi, xi = (np.array(k) + offset).tolist()
        centre = (float(grid.x.ravel()[xi]), float(grid.y.ravel()[yi]), float(grid.z.ravel()[zi]))
        r = float(radius[k]) * rng.uniform(0.45, 0.9)
        semi = r * rng.uniform(0.8, 1.25, size=3)
        lesion = _ellipsoid(grid, centre, semi) & organ
        if lesion.sum() > 0.5 * organ.sum():
            lesion[:] = False      # tiny volumes: keep the organ label present
        lesion[zi, yi, xi] = True  # at least one voxel even when the lesion is smaller than a voxel
        texture = 8.0 * rng.standard_normal(int(lesion.sum())).astype(np.float32)
        img[lesion] = hu["lesion"] + rng.normal(0.0, 5.0) + texture
        label[lesion] = 2


# ----------------------------------------------------------------------------------------------
# Writing a source dataset


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset<id:03d>_<name>``, nnU-Net's raw dataset folder name."""
    return f"Dataset{int(dataset_id):03d}_{name}"


def write_source_dataset(raw_root: Path, dataset_id: int, name: str, n_cases: int, config: SyntheticConfig,
                         case_prefix: Optional[str] = None, overwrite: bool = False) -> Path:
    """Write a complete nnU-Net raw *source* dataset of synthetic cases, all labeled.

    Cases go to ``imagesTr/<prefix>_<NNNN>_0000.nii.gz`` and ``labelsTr/<prefix>_<NNNN>.nii.gz``;
    ``dataset.json`` records the resolved generator options under ``"synthetic"``. The dataset is
    written into a temporary sibling folder and renamed at the end, so an interrupted run leaves
    nothing under the final name.

    Args:
        raw_root: the ``nnUNet_raw`` folder (created if missing).
        dataset_id: nnU-Net dataset id, 1..999.
        name: dataset name (letters, digits, ``_``, ``-``): the folder is ``Dataset<id>_<name>``.
        n_cases: number of cases (>= 1).
        config: generator options.
        case_prefix: case id prefix; default ``syn<domain>`` (``synA_0000``, ...).
        overwrite: replace an existing folder of the same name (it is deleted only after the new
            one is complete).

    Returns:
        The dataset folder.

    Raises:
        InputError: invalid arguments; the folder exists and ``overwrite`` is false; another
            dataset with the same id but a different name exists under ``raw_root``.
    """
    if not isinstance(dataset_id, (int, np.integer)) or isinstance(dataset_id, bool) or not 1 <= dataset_id <= 999:
        raise InputError(f"dataset_id must be an integer in 1..999, got {dataset_id!r}")
    if not isinstance(name, str) or not _DATASET_NAME_RE.match(name):
        raise InputError(f"dataset name must be letters, digits, '_' or '-', got {name!r}")
    if not isinstance(n_cases, (int, np.integer)) or isinstance(n_cases, bool) or n_cases < 1:
        raise InputError(f"n_cases must be an integer >= 1, got {n_cases!r}")
    prefix = f"syn{config.domain}" if case_prefix is None else case_prefix
    if not isinstance(prefix, str) or not _DATASET_NAME_RE.match(prefix):
        raise InputError(f"case_prefix must be letters, digits, '_' or '-', got {prefix!r}")

    raw_root = Path(raw_root)
    final = raw_root / dataset_folder_name(dataset_id, name)
    if final.exists() and not overwrite:
        raise InputError(f"{final} already exists; choose another dataset id / name, delete it, or pass "
                         "overwrite=True (--overwrite) to replace it")
    if raw_root.is_dir():
        clash = sorted(p.name for p in raw_root.glob(f"Dataset{int(dataset_id):03d}_*")
                       if p.is_dir() and p.name != final.name)
        if clash:
            raise InputError(f"dataset id {dataset_id} is already used by {clash} in {raw_root}; nnU-Net finds "
                             "datasets by id, so choose another --dataset-id")
    raw_root.mkdir(parents=True, exist_ok=True)

    logger.info("Writing %d synthetic domain-%s cases (shape %s, spacing %s) to %s", n_cases, config.domain,
                config.shape, config.spacing, final)
    with staged_directory(final, replace=overwrite) as tmp:
        for i in tqdm(range(int(n_cases)), desc=f"synthetic {final.name}", unit="case", disable=None):
            case = f"{prefix}_{i:04d}"
            image, label, geometry = generate_case(config, i)
            write_array(image, geometry, layout.image_path(tmp, layout.IMAGES_TR, case))
            write_array(label, geometry, layout.label_path(tmp, layout.LABELS_TR, case))
        dataset_json = {
            "name": name,
            "description": f"Synthetic abdominal CT, domain {config.domain} "
                           f"({'NIH-like, venous' if config.domain == 'A' else 'MSD-like, arterial'}), "
                           "generated by atso_nnunet.data.synthetic",
            "channel_names": {"0": "CT"},
            "labels": config.labels,
            "numTraining": int(n_cases),
            "file_ending": layout.FILE_ENDING,
            "synthetic": {**config.to_dict(), "n_cases": int(n_cases), "case_prefix": prefix,
                          "generator_version": GENERATOR_VERSION},
        }
        write_json(dataset_json, tmp / "dataset.json")
    logger.info("Wrote %s", final)
    return final
