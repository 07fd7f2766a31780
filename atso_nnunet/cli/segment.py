"""``atso_nnunet_segment``: segment new scans with a run's final tri-view models, fused by vote.

    atso_nnunet_segment --run-dir RUN_DIR -i new_scans/ -o segmentations/ [--device cuda]

``new_scans/`` holds ``<case>_0000.nii.gz`` files (nnU-Net's naming). Each view's model predicts
every case (kept in ``<output>/.views/<view>/``); the views are fused by majority vote into
``<output>/<case>.nii.gz`` with exactly the input image's geometry. Rerunning skips finished cases.

Everything is checked before any model loads: the device (known, and present on this machine),
the run folder (its plan.json readable and valid, every view's checkpoint_final.pth complete) and
every input file (readable, one 3D volume, complete and finite voxel data, the model's channels):
any problem is an error naming the file or option and the fix, exit status 2, and nothing is
written in the output folder.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from atso_nnunet.cli.common import add_verbose_option, folder, plain, run_cli
from atso_nnunet.data import layout
from atso_nnunet.errors import InputError

logger = logging.getLogger("atso_nnunet.segment")

DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def device_name(text: str) -> str:
    """An argparse ``type``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (torch's device names)."""
    if not DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; give cpu, cuda, cuda:N (a GPU index) or mps")
    return text


def check_device(device: str) -> None:
    """The device is present on this machine (before any model loads).

    Raises:
        InputError: CUDA or MPS asked for where torch finds none, or a GPU index beyond the GPUs.
    """
    import torch

    if device.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if n == 0:
            raise InputError(f"--device {device}: torch finds no CUDA GPU on this machine (torch "
                             f"{torch.__version__}); use --device cpu, or run where a GPU is visible")
        if index >= n:
            raise InputError(f"--device {device}: this machine has {n} CUDA GPU(s) (cuda:0 to cuda:{n - 1}); "
                             "give one of them")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: torch finds no Apple GPU (MPS) on this machine; use --device cpu")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="atso_nnunet_segment", description=plain(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=folder, required=True, help="folder of a finished atso_nnunet_run")
    p.add_argument("-i", "--input", type=folder, required=True, help="folder of <case>_0000.nii.gz images")
    p.add_argument("-o", "--output", type=folder, required=True, help="folder for the fused segmentations")
    p.add_argument("--model", default=None, help="model of the run to use (default: the one the plan's ship_generation ships; "
                   "the method's final model unless the rule is 'before_drift' and the pseudo-labels drifted)")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or mps")
    p.add_argument("--fusion", choices=("vote", "mean"), default="vote",
                   help="how the views are combined: majority vote or mean probability (default %(default)s)")
    p.add_argument("--no-mirroring", action="store_true", help="disable test-time mirroring (faster)")
    add_verbose_option(p)
    return p


def final_model_folders(run_dir: Path, model: Optional[str] = None) -> dict:
    """``{view: nnU-Net model folder}`` of a run's final (or named) model.

    Raises:
        InputError: the run folder has no plan or a damaged one, the model was not trained (yet), or
            a checkpoint is damaged (checked without loading it).
    """
    from atso_nnunet.methods import get_method
    from atso_nnunet.plan import plan_from_dict
    from atso_nnunet.paths import result_folder_name
    from atso_nnunet.run.rundir import RunDir
    from atso_nnunet.views import plans_identifier

    plan_file = run_dir / "plan.json"
    if not plan_file.is_file():
        raise InputError(f"{run_dir}: no plan.json; is this the run folder of atso_nnunet_run?")
    from atso_nnunet.io import checkpoint_problem

    fix = ("restore the run folder's plan.json (from a backup, or the copy of the run folder it came from); "
           "atso_nnunet_run writes it when a run starts")
    try:
        data = json.loads(plan_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{plan_file}: not valid JSON ({e}); {fix}") from None
    try:
        plan = plan_from_dict(data, origin=str(plan_file))
    except InputError as e:
        raise InputError(f"{e}\nThe run folder's plan is damaged or was edited: {fix}") from None
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
    damaged = [f"{f / f'fold_{plan.fold}' / 'checkpoint_final.pth'}: {problem}" for f in folders.values()
               for problem in [checkpoint_problem(f / f"fold_{plan.fold}" / "checkpoint_final.pth")] if problem]
    if damaged:
        raise InputError(f"model {model} of {run_dir}: damaged checkpoint(s): {'; '.join(damaged)}. The file was cut "
                         "short or damaged (an interrupted copy or download, a full disk): copy the model folder "
                         "again from the machine that trained it")
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

    check_device(args.device)
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
