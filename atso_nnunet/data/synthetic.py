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
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from atso_nnunet.data import layout
from atso_nnunet.data.materialize import staged_directory
from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, write_array, write_json

logger = logging.getLogger(__name__)

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


from atso_nnunet.data.synthetic_config import (  # noqa: E402, F401  (re-exported)
    DOMAIN_DEFAULTS, DOMAINS, GENERATOR_VERSION, SyntheticConfig, _is_number, _triple, case_id,
    case_prefix_or_default)


from atso_nnunet.data.synthetic_shapes import (  # noqa: E402  (the generator's shapes)
    _bezier, _cylinder, _ellipsoid, _Grid, _interpolation_weights, _smooth_noise, _tube_distance)  # noqa: F401


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
    prefix = case_prefix_or_default(config.domain, case_prefix)
    if not isinstance(prefix, str) or not _DATASET_NAME_RE.match(prefix):
        raise InputError(f"case_prefix must be letters, digits, '_' or '-', got {prefix!r}")

    raw_root = Path(raw_root)
    final = raw_root / layout.dataset_folder_name(dataset_id, name)
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
            case = case_id(prefix, i)
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
