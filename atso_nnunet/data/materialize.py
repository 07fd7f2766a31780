"""Build an experiment dataset from source datasets and three case lists.

An experiment needs its labeled set S in ``imagesTr``/``labelsTr`` (all nnU-Net sees), the
reference set R in ``imagesRef`` and the test set E in ``imagesTs`` (see
:mod:`atso_nnunet.data.layout`). The cases come from one or more *source* datasets (a converter's
or the generator's output); this module links (or copies) their files into the layout, writes
``dataset.json`` with ``numTraining = |S|`` and the ``"atso"`` block, and does it atomically:
the dataset is staged in a hidden sibling folder and renamed into place.

Example:
    >>> materialize(raw / "Dataset981_Synth10pct", [raw / "Dataset980_SyntheticA"],
    ...             labeled=["synA_0000", "synA_0001"], reference=["synA_0002"], test=["synA_0003"])
    ... # doctest: +SKIP
"""
from __future__ import annotations

import copy
import json
import logging
import os
import secrets
import shutil
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

from atso_nnunet.data import layout
from atso_nnunet.errors import InputError
from atso_nnunet.io import write_json

logger = logging.getLogger(__name__)

LINK_MODES = ("symlink", "copy")
# Where a source dataset may keep a case: image folder -> label folder, searched in this order.
SOURCE_FOLDERS = ((layout.IMAGES_TR, layout.LABELS_TR), (layout.IMAGES_TS, layout.LABELS_TS),
                  (layout.IMAGES_REF, layout.LABELS_REF))


@dataclass(frozen=True)
class CaseFiles:
    """Where one case lives in a source dataset.

    Attributes:
        image: the channel-0 image (``<case>_0000<ending>``).
        label: its ground truth, or None when the source has none.
        source: the source dataset folder.
    """

    image: Path
    label: Optional[Path]
    source: Path


@contextmanager
def staged_directory(final: os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``final``; rename it to ``final`` if the block succeeds.

    If the block raises, the staging folder is deleted and ``final`` is untouched, so an
    interrupted build leaves nothing under the final name. The folder is made with ``mkdir``
    (not ``mkdtemp``) so it gets the user's umask, not mode 0700.

    Args:
        final: the folder to create.
        replace: replace an existing ``final``; the old folder is deleted only after the new one
            is in place (and put back if the rename fails).

    Raises:
        OSError: ``final`` exists (and ``replace`` is false) when the block ends.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.partial"
    tmp.mkdir()
    try:
        yield tmp
        if replace and final.exists():
            old = final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.old"
            final.rename(old)
            try:
                tmp.rename(final)
            except OSError:
                old.rename(final)
                raise
            shutil.rmtree(old)
        elif final.exists():
            raise FileExistsError(f"{final} appeared while it was being built")
        else:
            tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def read_dataset_json(dataset_dir: os.PathLike) -> dict:
    """Read ``<dataset_dir>/dataset.json``.

    Raises:
        InputError: missing, not valid JSON, or not a JSON object.
    """
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise InputError(f"{path}: dataset.json not found; every nnU-Net raw dataset needs one "
                         "(channel_names, labels, numTraining, file_ending)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read dataset.json ({e}); fix or regenerate it") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: dataset.json must hold a JSON object, got {type(data).__name__}")
    return data


def _source_ending(source: Path) -> str:
    """The source's ``file_ending`` (``.nii.gz`` when it has no readable dataset.json)."""
    try:
        data = read_dataset_json(source)
    except InputError:
        return layout.FILE_ENDING
    channels = data.get("channel_names", data.get("modality", {"0": ""}))
    if isinstance(channels, dict) and len(channels) > 1:
        raise InputError(f"{source / 'dataset.json'}: {len(channels)} input channels; atso_nnunet "
                         "experiment datasets support single-channel (CT) sources only")
    ending = data.get("file_ending", layout.FILE_ENDING)
    return ending if isinstance(ending, str) and ending else layout.FILE_ENDING


def available_cases(source_dirs: Sequence[os.PathLike]) -> set:
    """Case ids with an image in any of the (existing) source folders."""
    out = set()
    for source in (Path(s) for s in source_dirs):
        if source.is_dir():
            ending = _source_ending(source)
            for image_dir, _ in SOURCE_FOLDERS:
                out.update(layout.case_ids_in(source / image_dir, ending=ending))
    return out


def find_cases(source_dirs: Sequence[os.PathLike], case_ids: Sequence[str]) -> Dict[str, CaseFiles]:
    """Find cases across source datasets.

    Each source is searched in ``imagesTr``/``labelsTr``, ``imagesTs``/``labelsTs`` and
    ``imagesRef``/``labelsRef``; a case's label is the file of the same id in the matching
    labels folder, if there is one. Images directly in a source folder (a plain folder of
    ``<case>_0000.nii.gz``, as ``atso_nnunet_make_plan --unlabeled`` records it) are unlabeled cases.

    Args:
        source_dirs: nnU-Net raw dataset folders.
        case_ids: the case ids to find.

    Returns:
        ``{case: CaseFiles}`` for every requested case, in the order of ``case_ids``.

    Raises:
        InputError: a source folder does not exist; a case is found more than once (in two sources,
            or in two folders of one source); some cases are found nowhere (all listed at once).
    """
    sources = [Path(s) for s in source_dirs]
    missing_sources = [str(s) for s in sources if not s.is_dir()]
    if missing_sources:
        raise InputError(f"source dataset folder(s) not found: {missing_sources}; create them first "
                         "(atso_nnunet_synth / atso_nnunet_convert) or fix the plan's 'sources'")
    wanted = set(case_ids)
    hits: Dict[str, List[CaseFiles]] = {c: [] for c in wanted}
    for source in sources:
        ending = _source_ending(source)
        for image_dir, label_dir in SOURCE_FOLDERS:
            for case in layout.case_ids_in(source / image_dir, ending=ending):
                if case not in wanted:
                    continue
                label = layout.label_path(source, label_dir, case, ending=ending)
                hits[case].append(CaseFiles(layout.image_path(source, image_dir, case, ending=ending),
                                            label if label.exists() else None, source))
        # a plain folder of images (atso_nnunet_make_plan --unlabeled): unlabeled cases
        for case in layout.case_ids_in(source, ending=ending):
            if case in wanted:
                hits[case].append(CaseFiles(layout.image_path(source, ".", case, ending=ending), None, source))
    missing = [c for c in case_ids if not hits[c]]
    duplicated = {c: h for c, h in hits.items() if len(h) > 1}
    problems = []
    if missing:
        problems.append(f"{len(missing)} case(s) not found in imagesTr/imagesTs/imagesRef of "
                        f"{[str(s) for s in sources]}: {missing}; check the case ids or the sources")
    for case, found in sorted(duplicated.items()):
        problems.append(f"case {case} found more than once ({[str(f.image) for f in found]}); case ids must "
                        "be unique across the sources: rename one or drop a source")
    if problems:
        raise InputError("\n".join(problems))
    return {c: hits[c][0] for c in case_ids}


def _check_lists(labeled: Sequence[str], reference: Sequence[str], test: Sequence[str]) -> None:
    problems = []
    for role, ids in (("labeled", labeled), ("reference", reference), ("test", test)):
        if isinstance(ids, str):
            problems.append(f"{role} must be a list of case ids, got the string {ids!r}")
            continue
        dup = sorted(c for c, n in Counter(ids).items() if n > 1)
        if dup:
            problems.append(f"{role} lists these case(s) more than once: {dup}")
    if not problems:
        for (ra, a), (rb, b) in ((("labeled", labeled), ("reference", reference)),
                                 (("labeled", labeled), ("test", test)),
                                 (("reference", reference), ("test", test))):
            both = sorted(set(a) & set(b))
            if both:
                problems.append(f"case(s) in both {ra} and {rb}: {both}; the sets must not overlap")
        if not labeled:
            problems.append("labeled is empty; nnU-Net needs at least one labeled case to train")
    if problems:
        raise InputError("invalid case lists:\n  - " + "\n  - ".join(problems))


def materialize(target_dir: os.PathLike, sources: Sequence[os.PathLike], labeled: Sequence[str],
                reference: Sequence[str], test: Sequence[str], dataset_name: Optional[str] = None,
                labels: Optional[Mapping[str, int]] = None, link: str = "symlink") -> Path:
    """Create the experiment dataset ``target_dir`` from ``sources`` and the three case lists.

    S goes to ``imagesTr``/``labelsTr`` (a label is required), R to ``imagesRef`` (+ ``labelsRef``
    where the source has ground truth), E to ``imagesTs`` (+ ``labelsTs``). ``dataset.json`` is the
    one of the first labeled case's source with ``numTraining = |S|`` and
    ``"atso": {"reference": R, "test": E, "sources": [source folder names]}``.

    Idempotent: an existing ``target_dir`` built from the same case lists and sources is returned
    as is; one built from different lists is an error (it is never deleted).

    Args:
        target_dir: the dataset folder to create, ``nnUNet_raw/DatasetXXX_Name``.
        sources: source dataset folders.
        labeled: case ids of S.
        reference: case ids of R (may be empty).
        test: case ids of E (may be empty).
        dataset_name: ``name`` written into dataset.json (default: the target folder's name).
        labels: nnU-Net ``labels`` to write instead of the source's (e.g. when sources disagree).
        link: ``"symlink"`` (relative links to the source files) or ``"copy"``.

    Returns:
        ``target_dir``.

    Raises:
        InputError: bad arguments, overlapping or duplicated lists, missing cases or labels,
            sources with different labels, or ``target_dir`` exists with other contents.
    """
    target = Path(target_dir)
    if link not in LINK_MODES:
        raise InputError(f"link must be one of {list(LINK_MODES)}, got {link!r}")
    labeled, reference, test = list(labeled), list(reference), list(test)
    _check_lists(labeled, reference, test)
    source_names = [Path(s).name for s in sources]

    if target.exists():
        _check_existing(target, labeled, reference, test, source_names)
        logger.info("Experiment dataset %s already exists with the same cases; reusing it", target)
        return target

    found = find_cases(sources, labeled + reference + test)
    no_label = [f"{c} ({found[c].image})" for c in labeled if found[c].label is None]
    if no_label:
        raise InputError(f"labeled case(s) without a label file in their source: {no_label}; move them to "
                         "reference/test or add their labels")
    endings = {c: f.image.name[len(c) + len(layout.CHANNEL):] for c, f in found.items()}
    if len(set(endings.values())) > 1:
        raise InputError(f"the cases have different file endings {sorted(set(endings.values()))} in their sources; "
                         "nnU-Net needs one file ending per dataset: convert the sources to one format")
    ending = endings[labeled[0]]
    first_source = found[labeled[0]].source
    dataset_json = copy.deepcopy(read_dataset_json(first_source))
    if labels is None:
        _check_same_labels({found[c].source for c in labeled}, dataset_json.get("labels"), first_source)
    else:
        dataset_json["labels"] = dict(labels)
    if "dataset" in dataset_json:
        # nnU-Net would read the cases from this mapping (source paths) instead of imagesTr.
        logger.warning("Dropping the 'dataset' key of %s/dataset.json from the experiment dataset", first_source)
        del dataset_json["dataset"]
    dataset_json.update(name=dataset_name or target.name, numTraining=len(labeled), file_ending=ending)
    dataset_json["atso"] = {"reference": reference, "test": test, "sources": source_names}

    plan = [(labeled, layout.IMAGES_TR, layout.LABELS_TR), (reference, layout.IMAGES_REF, layout.LABELS_REF),
            (test, layout.IMAGES_TS, layout.LABELS_TS)]
    final_parent = target.parent.resolve() if target.parent.exists() else target.parent.absolute()
    logger.info("Materialising %s: %d labeled, %d reference, %d test cases (%s)", target, len(labeled),
                len(reference), len(test), link)
    try:
        with staged_directory(target) as tmp:
            for ids, image_dir, label_dir in plan:
                (tmp / image_dir).mkdir()
                for case in ids:
                    files = found[case]
                    _place(files.image, layout.image_path(tmp, image_dir, case, ending=ending),
                           final_parent / target.name / image_dir, link)
                    if files.label is not None:
                        (tmp / label_dir).mkdir(exist_ok=True)
                        _place(files.label, layout.label_path(tmp, label_dir, case, ending=ending),
                               final_parent / target.name / label_dir, link)
            write_json(dataset_json, tmp / "dataset.json")
    except OSError as e:
        if target.exists():
            # Built concurrently by another process: accept it if it holds the same cases.
            _check_existing(target, labeled, reference, test, source_names)
            return target
        raise InputError(f"cannot create {target}: {e}") from e
    return target


def _place(src: Path, dst: Path, final_dir: Path, link: str) -> None:
    """Symlink (relative to the folder ``dst`` will finally be in) or copy ``src`` to ``dst``."""
    if link == "copy":
        shutil.copy2(src, dst)
    else:
        os.symlink(os.path.relpath(src.resolve(), final_dir), dst)


def _check_same_labels(sources, labels, first_source: Path) -> None:
    differing = []
    for source in sorted(sources):
        other = read_dataset_json(source).get("labels")
        if other != labels:
            differing.append(f"{source}: {other}")
    if differing:
        raise InputError(f"the labeled cases come from sources with different labels ({first_source}: {labels}; "
                         + "; ".join(differing) + "); pass labels=... to choose the experiment's labels")


def _check_existing(target: Path, labeled: List[str], reference: List[str], test: List[str],
                    source_names: List[str]) -> None:
    """Accept an existing experiment dataset only if it was built from the same lists and sources."""
    try:
        existing = read_dataset_json(target)
    except InputError as e:
        raise InputError(f"{target} exists but is not a complete experiment dataset ({e}); it is not deleted "
                         "automatically: remove it yourself to rebuild it") from e
    atso = existing.get("atso") if isinstance(existing.get("atso"), dict) else {}
    have = {"labeled": layout.case_ids_in(target / layout.IMAGES_TR, ending=existing.get("file_ending",
                                                                                         layout.FILE_ENDING)),
            "reference": sorted(atso.get("reference", [])), "test": sorted(atso.get("test", []))}
    want = {"labeled": sorted(labeled), "reference": sorted(reference), "test": sorted(test)}
    diffs = []
    for role in ("labeled", "reference", "test"):
        extra, lacking = sorted(set(have[role]) - set(want[role])), sorted(set(want[role]) - set(have[role]))
        if extra or lacking:
            diffs.append(f"{role}: has {len(extra)} case(s) not requested {extra[:5]}, lacks {len(lacking)} "
                         f"requested {lacking[:5]}")
    if sorted(atso.get("sources", [])) != sorted(source_names):
        diffs.append(f"sources: built from {atso.get('sources')}, requested {source_names}")
    if diffs:
        raise InputError(f"{target} already exists with other contents (" + "; ".join(diffs) + "). It is never "
                         "deleted automatically: choose another dataset id / name, or remove it yourself")
    folders = [f for pair in layout.IMAGE_TO_LABEL_DIR.items() for f in pair]
    broken = [str(p) for folder in folders for p in sorted((target / folder).glob("*"))
              if p.is_symlink() and not p.exists()]
    if broken:
        raise InputError(f"{target}: {len(broken)} link(s) point to files that no longer exist, e.g. {broken[:3]}; "
                         "restore the sources or remove the dataset to rebuild it")
