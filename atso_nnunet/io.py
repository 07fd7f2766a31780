"""Image and file I/O: SimpleITK volumes with their geometry, and atomic writes.

Every file atso_nnunet produces is written to a temporary name in the same folder and renamed
into place, so an interrupted run never leaves a half-written file under the final name.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import SimpleITK as sitk

from atso_nnunet.errors import InputError


@dataclass(frozen=True)
class Geometry:
    """Physical geometry of a 3D image in SimpleITK (x, y, z) order.

    Attributes:
        size: voxels along x, y, z (the numpy array is (z, y, x)).
        spacing: mm along x, y, z.
        origin: physical position of voxel (0, 0, 0).
        direction: 3x3 direction cosines, row-major, 9 floats.
    """

    size: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    def apply(self, image: sitk.Image) -> sitk.Image:
        """Stamp this geometry (not the size) on ``image`` and return it."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def matches(self, other: "Geometry", atol: float = 1e-3) -> bool:
        """Same size, and spacing / origin / direction equal within ``atol``."""
        return (self.size == other.size
                and np.allclose(self.spacing, other.spacing, atol=atol)
                and np.allclose(self.origin, other.origin, atol=atol)
                and np.allclose(self.direction, other.direction, atol=atol))

    def describe_difference(self, other: "Geometry", atol: float = 1e-3) -> str:
        """Human-readable list of the fields that differ (empty if they match)."""
        diffs = []
        for name in ("size", "spacing", "origin", "direction"):
            a, b = getattr(self, name), getattr(other, name)
            same = a == b if name == "size" else np.allclose(a, b, atol=atol)
            if not same:
                diffs.append(f"{name} {tuple(round(x, 4) for x in a)} vs {tuple(round(x, 4) for x in b)}")
        return "; ".join(diffs)


def read_image(path: os.PathLike, expect_3d: bool = True) -> sitk.Image:
    """Read one image with SimpleITK.

    Raises:
        InputError: the file is missing, unreadable, or (with ``expect_3d``) not a 3D scalar image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputError(f"{path}: SimpleITK cannot read this file ({str(e).strip().splitlines()[-1]})") from e
    if expect_3d and (image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1):
        raise InputError(
            f"{path}: expected a 3D single-channel image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) and size {image.GetSize()}; "
            "convert it to one 3D volume per file (4D or 2D files are not supported)")
    return image


def read_array(path: os.PathLike) -> Tuple[np.ndarray, Geometry]:
    """Read a 3D image as a numpy array in (z, y, x) order plus its :class:`Geometry`."""
    image = read_image(path)
    return sitk.GetArrayFromImage(image), Geometry.of(image)


@contextmanager
def atomic_path(final: os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` if the block succeeds.

    The temporary name keeps ``final``'s suffixes (``.nii.gz``) so writers infer the format.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial" + suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates 0600; give the file the permissions a plain open() would (shared clusters)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_array(array: np.ndarray, geometry: Geometry, path: os.PathLike, compress: bool = True) -> Path:
    """Atomically write a (z, y, x) array with ``geometry`` to ``path`` (format from the suffix)."""
    array = np.asarray(array)
    expected = tuple(reversed(geometry.size))
    if array.shape != expected:
        raise ValueError(f"array shape {array.shape} does not match geometry size {geometry.size} (z, y, x = {expected})")
    image = geometry.apply(sitk.GetImageFromArray(array))
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return Path(path)


def read_json(path: os.PathLike) -> Optional[Any]:
    """A JSON file's content, or None if it is missing or not valid JSON (an unfinished marker)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def write_json(obj: Any, path: os.PathLike, **kwargs) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    kwargs.setdefault("indent", 2)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, **kwargs) + "\n", encoding="utf-8")
    return Path(path)


def write_text(text: str, path: os.PathLike) -> Path:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def checkpoint_problem(path: os.PathLike) -> Optional[str]:
    """What is wrong with a PyTorch checkpoint file, checked without loading it (None: intact).

    ``torch.save`` writes a zip archive; a file cut short (a copy or download interrupted, a full
    disk) has no central directory, and damaged data fails the archive's CRC check.

    Returns:
        ``"missing"``, ``"empty"``, ``"truncated or not a PyTorch checkpoint (...)"`` or
        ``"damaged: ..."``.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "not a PyTorch checkpoint (a zip archive without data.pkl)"
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"truncated or not a PyTorch checkpoint ({e})"
    return None if bad is None else f"damaged: the data of {bad} fails its checksum"
