"""``atso_nnunet_segment``: segment new scans with a run's final tri-view models, fused by vote.

    atso_nnunet_segment --run-dir RUN_DIR -i new_scans/ -o segmentations/ [--device cuda]

``new_scans/`` holds ``<case>_0000.nii.gz`` files (nnU-Net's naming). Each view's model predicts
every case (kept in ``<output>/.views/<view>/``); the views are fused by majority vote into
``<output>/<case>.nii.gz`` with exactly the input image's geometry. Rerunning skips finished cases.

Every input file is checked first (readable, one 3D volume, complete and finite voxel data, the
model's channels): any problem is an error naming the file, exit status 2, and nothing is
written in the output folder.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from atso_nnunet.cli.common import add_verbose_option, plain, run_cli
from atso_nnunet.data import layout
from atso_nnunet.errors import InputError

logger = logging.getLogger("atso_nnunet.segment")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="atso_nnunet_segment", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, required=True, help="folder of a finished atso_nnunet_run")
    p.add_argument("-i", "--input", type=Path, required=True, help="folder of <case>_0000.nii.gz images")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the fused segmentations")
    p.add_argument("--model", default=None, help="model of the run to use (default: the one the plan's ship_generation ships; "
                   "the method's final model unless the rule is 'before_drift' and the pseudo-labels drifted)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps")
    p.add_argument("--fusion", choices=("vote", "mean"), default="vote",
                   help="how the views are combined: majority vote or mean probability (default %(default)s)")
    p.add_argument("--no-mirroring", action="store_true", help="disable test-time mirroring (faster)")
    add_verbose_option(p)
    return p


def final_model_folders(run_dir: Path, model: Optional[str] = None) -> dict:
    """``{view: nnU-Net model folder}`` of a run's final (or named) model.

    Raises:
        InputError: the run folder has no plan, or the model was not trained (yet).
    """
    from atso_nnunet.methods import get_method
    from atso_nnunet.plan import plan_from_dict
    from atso_nnunet.paths import result_folder_name
    from atso_nnunet.run.rundir import RunDir
    from atso_nnunet.views import plans_identifier

    plan_file = run_dir / "plan.json"
    if not plan_file.is_file():
        raise InputError(f"{run_dir}: no plan.json; is this the run folder of atso_nnunet_run?")
    plan = plan_from_dict(json.loads(plan_file.read_text()), origin=str(plan_file))
    method = get_method(plan.method)
    if model is None:
        from atso_nnunet.run.shipping import shipped_model

        shipped = shipped_model(run_dir, plan)
        model = shipped.model
        logger.info("model %s: %s", model, shipped.why)
    trainer = method.trainer_for(model)
    dataset = layout.dataset_folder_name(plan.dataset_id, plan.dataset_name)
    folders, missing = {}, []
    for view in plan.views:
        folder = (RunDir(run_dir).results_root(model) / dataset
                  / result_folder_name(trainer, plans_identifier(view), plan.configuration))
        if not (folder / f"fold_{plan.fold}" / "checkpoint_final.pth").is_file():
            missing.append(str(folder / f"fold_{plan.fold}" / "checkpoint_final.pth"))
        folders[view] = folder
    if missing:
        raise InputError(f"model {model} of {run_dir} is not trained yet (missing: {', '.join(missing)}); "
                         "finish the run with atso_nnunet_run first")
    return folders, plan


def model_channels(folders: dict) -> Tuple[Dict[str, str], str]:
    """The ``channel_names`` and ``file_ending`` the run's models were trained with (their dataset.json)."""
    from atso_nnunet.io import read_json

    path = next(iter(folders.values())) / "dataset.json"
    dataset_json = read_json(path)
    if not isinstance(dataset_json, dict):
        raise InputError(f"{path}: missing or unreadable; the model folder is incomplete, finish the run with "
                         "atso_nnunet_run first")
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise InputError(f"{path}: no channel_names; the model folder is incomplete")
    return channels, dataset_json.get("file_ending", layout.FILE_ENDING)


def _run(args) -> int:
    from atso_nnunet.data.checks import check_images_to_predict
    from atso_nnunet.nnunet.predict import predict_tri_view

    folders, plan = final_model_folders(args.run_dir.resolve(), args.model)
    channels, ending = model_channels(folders)
    # Every input is checked before any view runs: a bad file found by nnU-Net after the first
    # view has written its predictions would leave a half-done output folder.
    inputs = check_images_to_predict(args.input, channels, ending)
    out = predict_tri_view(folders, inputs, args.output / ".views", args.output, fusion=args.fusion,
                           folds=(plan.fold,), device=args.device, use_mirroring=not args.no_mirroring)
    logger.info("%d fused segmentation(s) in %s", len(out), args.output)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
