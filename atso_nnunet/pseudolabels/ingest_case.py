"""Per-case work of pseudo-label ingestion (top level: runs in spawn workers); see :mod:`atso_nnunet.pseudolabels.ingest`."""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np
import SimpleITK as sitk

from atso_nnunet.errors import InputError
from atso_nnunet.io import Geometry, atomic_path


@dataclass(frozen=True)
class _Target:
    """Where and how one case is ingested for one view (plain paths: picklable for spawn workers)."""

    plans_file: str
    configuration: str
    dataset_json_file: str
    properties_dir: str
    cache_dir: str



def _is_empty(pkl: Path) -> bool:
    with open(pkl, "rb") as f:
        return not bool(pickle.load(f).get("atso_foreground", True))


# --------------------------------------------------------------------------------------------
# Per-case work (top level: runs in spawn workers)
# --------------------------------------------------------------------------------------------
def _check_case(case: str, label_file: str, image_file: str, allowed: Tuple[int, ...]) -> List[str]:
    """Geometry against the image's header, and label values; returns the problems found."""
    from atso_nnunet.data.labels import check_label_file

    reader = sitk.ImageFileReader()
    reader.SetFileName(image_file)
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        return [f"case {case}: image {image_file}: SimpleITK cannot read it ({str(e).strip().splitlines()[-1]})"]
    image_geometry = Geometry(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                              tuple(reader.GetDirection()))
    return [f"case {case}: {p} (pseudo-labels must be written in the original image geometry, as nnU-Net's "
            f"predictor exports them)" if "geometry" in p else f"case {case}: {p}"
            for p in check_label_file(label_file, allowed, image_geometry)]


def seg_to_preprocessed(seg: np.ndarray, data: np.ndarray, properties: dict, plans_manager, configuration_manager,
                        dataset_json: dict, preprocessor=None) -> Tuple[np.ndarray, dict]:
    """Apply to a label map the geometry nnU-Net applied to its image; sample class locations.

    The segmentation branch of ``DefaultPreprocessor.run_case_npy`` (nnunetv2 2.8.1), same calls,
    same order, with the image's crop box and shapes checked against its saved properties.

    Args:
        seg: label map as nnU-Net's reader returns it, (1, z, y, x) in file order.
        data: the case's raw image(s), (c, z, y, x), for the non-zero mask.
        properties: the image's nnU-Net properties (its pkl).
        plans_manager: nnU-Net ``PlansManager`` of the view.
        configuration_manager: the configuration's ``ConfigurationManager``.
        dataset_json: the dataset.json nnU-Net preprocessed with.
        preprocessor: the configuration's preprocessor instance (default: a new one).

    Returns:
        (seg as int16 in the preprocessed space (1, ...), class_locations).

    Raises:
        InputError: the image no longer matches its preprocessed properties (re-run preprocessing).
    """
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

    if preprocessor is None:
        preprocessor = configuration_manager.preprocessor_class(verbose=False)
    data = data.astype(np.float32)
    seg = np.copy(seg)
    axes = [0, *[i + 1 for i in plans_manager.transpose_forward]]
    data = data.transpose(axes)
    seg = seg.transpose(axes)
    original_spacing = [properties["spacing"][i] for i in plans_manager.transpose_forward]
    if tuple(data.shape[1:]) != tuple(properties["shape_before_cropping"]):
        raise InputError(f"image shape {data.shape[1:]} (transposed) differs from its preprocessed "
                         f"shape_before_cropping {tuple(properties['shape_before_cropping'])}; re-run preprocessing")
    data, seg, bbox = crop_to_nonzero(data, seg)
    if [list(b) for b in bbox] != [list(b) for b in properties["bbox_used_for_cropping"]]:
        raise InputError(f"image's non-zero box {bbox} differs from bbox_used_for_cropping "
                         f"{properties['bbox_used_for_cropping']}: the image changed since preprocessing; re-run it")
    target_spacing = configuration_manager.spacing
    if len(target_spacing) < len(seg.shape[1:]):
        target_spacing = [original_spacing[0]] + target_spacing
    new_shape = compute_new_shape(seg.shape[1:], original_spacing, target_spacing)
    seg = configuration_manager.resampling_fn_seg(seg, new_shape, original_spacing, target_spacing)
    label_manager = plans_manager.get_label_manager(dataset_json)
    collect_for_this = list(label_manager.foreground_regions if label_manager.has_regions
                            else label_manager.foreground_labels)
    if label_manager.has_ignore_label:
        collect_for_this.append([-1] + label_manager.all_labels)
    class_locations = preprocessor._sample_foreground_locations(seg, collect_for_this, verbose=False)
    seg = preprocessor.modify_seg_fn(seg, plans_manager, dataset_json, configuration_manager)
    seg = seg.astype(np.int16 if np.max(seg) > 127 else np.int8).astype(np.int16, copy=False)
    return seg, class_locations


def _ingest_case(case: str, label_file: str, image_files: List[str], targets: List[_Target]) -> None:
    """Ingest one case into each target view's cache (seg first, pkl last); files are read once."""
    import blosc2
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    raw_data = raw_seg = None
    for t in targets:
        plans_manager = PlansManager(t.plans_file)
        cm = plans_manager.get_configuration(t.configuration)
        dataset_json = json.loads(Path(t.dataset_json_file).read_text())
        with open(Path(t.properties_dir) / f"{case}.pkl", "rb") as f:
            properties = pickle.load(f)
        if raw_data is None:
            rw = plans_manager.image_reader_writer_class()
            raw_data, _ = rw.read_images(image_files)
            raw_seg, _ = rw.read_seg(label_file)
        try:
            seg, class_locations = seg_to_preprocessed(raw_seg, raw_data, properties, plans_manager, cm, dataset_json)
        except InputError as e:
            raise InputError(f"case {case} ({image_files[0]}): {e}") from e
        image_shape = tuple(blosc2.open(str(Path(t.properties_dir) / f"{case}.b2nd"), mode="r").shape)
        if tuple(seg.shape) != image_shape:
            raise InputError(f"case {case}: ingested label shape {seg.shape} differs from the preprocessed image "
                             f"{image_shape} in {t.properties_dir}; re-run preprocessing")

        blocks, chunks = comp_blosc2_params(seg.shape, tuple(cm.patch_size), seg.itemsize)
        with atomic_path(Path(t.cache_dir) / f"{case}_seg.b2nd") as tmp:
            tmp.unlink()  # blosc2 refuses to overwrite
            # LZ4 without filter: label maps compress to almost nothing and decompress fast
            cparams = {"codec": blosc2.Codec.LZ4, "clevel": 5, "nthreads": 1, "filters": [blosc2.Filter.NOFILTER]}
            blosc2.asarray(np.ascontiguousarray(seg), urlpath=str(tmp), chunks=chunks, blocks=blocks,
                           cparams=cparams)
        properties = dict(properties)
        properties["class_locations"] = class_locations
        properties["atso_foreground"] = bool(np.any(seg > 0))
        properties["atso_pseudo_label_file"] = label_file
        with atomic_path(Path(t.cache_dir) / f"{case}.pkl") as tmp:
            with open(tmp, "wb") as f:
                pickle.dump(properties, f)
