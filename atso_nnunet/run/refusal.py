"""A refused run leaves nothing behind: the folders it created before it was refused are removed again.

Most checks run before anything is written (the plan at load, the options at parse time, the
sources in :mod:`atso_nnunet.run.preflight`), but a few need the experiment dataset built (the raw
data checks) or nnU-Net's plans (the network override fits the planned network). When one of them
refuses a run, the folders that did not exist before the command (the run folder, nnU-Net's three
folders, the experiment dataset and its preprocessed folder) are removed again, so that the
corrected command starts from the state the refused one found. A folder that existed before is
never touched, and nothing is removed once the run has recorded work (``keep``).
"""
from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

from atso_nnunet.errors import InputError

logger = logging.getLogger(__name__)


def highest_missing(path: Path) -> Optional[Path]:
    """The highest folder on the way to ``path`` that does not exist yet (None: ``path`` exists).

    Example: with ``/data`` existing, ``highest_missing(Path("/data/nn/nnUNet_raw"))`` is ``/data/nn``.
    """
    path = Path(path).absolute()
    if path.exists() or path.is_symlink():
        return None
    top = path
    for parent in path.parents:
        if parent.exists():
            return top
        top = parent
    return top


@contextmanager
def removed_on_refusal(paths: Sequence[Path], keep: Callable[[], bool] = lambda: False,
                       before_removal: Optional[Callable[[], None]] = None) -> Iterator[List[Path]]:
    """On an :class:`~atso_nnunet.errors.InputError` inside, remove what was created of ``paths``.

    Args:
        paths: folders the guarded work may create (any depth: the highest new folder above each
            one is what goes).
        keep: called on refusal; True keeps everything (the run recorded work worth keeping).
        before_removal: called before anything is removed (e.g. stop warm workers writing there).

    Yields:
        The folders that will be removed on refusal (those missing now).
    """
    created = sorted({top for top in map(highest_missing, paths) if top is not None}, key=lambda p: len(p.parts))
    try:
        yield created
    except InputError:
        if created and not keep():
            if before_removal is not None:
                before_removal()
            for top in created:
                if top.is_dir() and not top.is_symlink():
                    shutil.rmtree(top, ignore_errors=True)
                elif top.exists() or top.is_symlink():
                    top.unlink()
            logger.debug("refused: removed %s again", ", ".join(map(str, created)))
        raise
