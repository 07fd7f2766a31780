"""File-level integrity of images and labels: the header SimpleITK reads, and the voxel data read once
as a stream (truncated or corrupt gzip streams, too few voxel bytes, NaN or infinite floats).

SimpleITK reads a truncated ``.nii.gz`` without any error and fills the missing part with zeros, so
the gzip stream is checked to its end-of-stream marker and CRC, and the voxel bytes are counted
against the header's size. :func:`file_problem` is the whole check of one file.
"""
from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk

from atso_nnunet.io import Geometry

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Header:
    """What ``ReadImageInformation`` tells about a file."""

    dimension: int
    components: int
    size: Tuple[int, ...]
    geometry: Optional[Geometry]      # None unless the image is 3D
    nifti: Optional["NiftiLayout"] = None   # where the voxels lie, for NIfTI files


@dataclass(frozen=True)
class NiftiLayout:
    """Where a NIfTI file keeps its voxels (from the header SimpleITK read)."""

    vox_offset: int
    n_bytes: int                       # voxel bytes the header promises
    float_bytes: Optional[int]         # 4 / 8 for float32 / float64 data, None otherwise


# NIfTI datatype codes of float data -> bytes per value (NaN / Inf are possible only there)
_NIFTI_FLOATS = {16: 4, 64: 8}
_CHUNK = 1 << 23


def read_header(path: Path) -> Tuple[Optional[Header], Optional[str]]:
    """Read an image header; returns (header, None) or (None, problem)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        return None, f"{display_path(path)}: SimpleITK cannot read this file ({reason}); re-export or replace it"
    dim = reader.GetDimension()
    geometry = None
    if dim == 3:
        geometry = Geometry(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                            tuple(reader.GetDirection()))
    return Header(dim, reader.GetNumberOfComponents(), tuple(reader.GetSize()), geometry,
                   _nifti_layout(reader)), None


def display_path(path: Path) -> str:
    """A file as messages name it: a link (experiment datasets link their sources) also names its target."""
    return f"{path} (-> {path.resolve()})" if path.is_symlink() else str(path)


def _nifti_layout(reader: sitk.ImageFileReader) -> Optional[NiftiLayout]:
    keys = set(reader.GetMetaDataKeys())
    if not {"vox_offset", "bitpix", "datatype", "dim[0]"} <= keys:
        return None
    try:
        n_dims = int(reader.GetMetaData("dim[0]"))
        n_voxels = int(np.prod([max(int(reader.GetMetaData(f"dim[{i}]")), 1) for i in range(1, n_dims + 1)]))
        bitpix, datatype = int(reader.GetMetaData("bitpix")), int(reader.GetMetaData("datatype"))
        vox_offset = int(float(reader.GetMetaData("vox_offset")))
    except (RuntimeError, ValueError):
        return None
    return NiftiLayout(vox_offset, n_voxels * bitpix // 8, _NIFTI_FLOATS.get(datatype))


def voxel_problem(path: Path, header: Header) -> Optional[str]:
    """Read a file's voxels: truncated / corrupt data and NaN / Inf values are problems."""
    if header.nifti is not None:
        return nifti_voxel_problem(path, header.nifti)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1]
        return f"{display_path(path)}: cannot read the voxels ({reason}); re-export or replace the file"
    # The view borrows the image's buffer: keep ``image`` alive while it is used.
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        return _non_finite_problem(path, int(np.count_nonzero(~np.isfinite(array))), array.dtype)
    return None


def _non_finite_problem(path: Path, count: int, dtype) -> Optional[str]:
    if not count:
        return None
    return (f"{display_path(path)}: {count} voxel(s) are NaN or infinite ({np.dtype(dtype).name} data); replace them "
            "(e.g. with the image's minimum) and save the image again")


def nifti_voxel_problem(path: Path, nifti: NiftiLayout) -> Optional[str]:
    """Stream a NIfTI file once: complete gzip stream (CRC), every voxel byte present, finite floats.

    SimpleITK reads a truncated ``.nii.gz`` without an error and returns zeros for what is
    missing; reading the stream to its end is how the truncation shows.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    dtype = None
    position, voxel_bytes, non_finite = 0, 0, 0
    carry = b""
    try:
        with opener(path, "rb") as f:
            while True:
                chunk = f.read1(_CHUNK)
                if not chunk:
                    break
                if dtype is None and nifti.float_bytes and position == 0:
                    sizeof_hdr = int.from_bytes(chunk[:4], "little")
                    order = "<" if sizeof_hdr in (348, 540) else ">"
                    dtype = np.dtype(f"{order}f{nifti.float_bytes}")
                start = max(nifti.vox_offset - position, 0)
                position += len(chunk)
                if start >= len(chunk):
                    continue
                data = chunk[start:]
                voxel_bytes += len(data)
                if dtype is not None:
                    data = carry + data
                    usable = len(data) - len(data) % dtype.itemsize
                    values = np.frombuffer(data[:usable], dtype)
                    non_finite += int(np.count_nonzero(~np.isfinite(values)))
                    carry = data[usable:]
    except EOFError:
        return (f"{display_path(path)}: the file is truncated (the compressed stream ends after "
                f"{_share(voxel_bytes, nifti)} of the voxel data; SimpleITK would read the rest as zeros); copy or "
                "export the file again")
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        return f"{display_path(path)}: the file is corrupt ({e}); copy or export the file again"
    if voxel_bytes < nifti.n_bytes:
        return (f"{display_path(path)}: the file is truncated (it holds {_share(voxel_bytes, nifti)} of the voxel data "
                "its header promises; SimpleITK would read the rest as zeros); copy or export the file again")
    return _non_finite_problem(path, non_finite, dtype) if dtype is not None else None


def _share(voxel_bytes: int, nifti: NiftiLayout) -> str:
    return f"{min(voxel_bytes, nifti.n_bytes) / max(nifti.n_bytes, 1):.0%}"


def dimension_problem(path: Path, header: Header) -> Optional[str]:
    if header.dimension != 3:
        kind = f"{header.dimension}D"
        return (f"{display_path(path)}: {kind} image of size {header.size}, expected one 3D volume; "
                + ("split the 4D file into one 3D file per volume/channel" if header.dimension > 3
                   else "stack the 2D slices into one 3D volume"))
    if header.components != 1:
        return (f"{display_path(path)}: {header.components} components per voxel (e.g. RGB / vector image), expected a "
                "single scalar channel; store each channel as its own _000X file")
    return None


def file_problem(path: Path) -> Optional[str]:
    """The whole file-level check of one image or label: readable header, then complete, finite voxels."""
    header, problem = read_header(path)
    return problem or voxel_problem(path, header)
