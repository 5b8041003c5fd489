"""DICOM decoding: the modality LUT, then the VOI LUT or window, then MONOCHROME1 inversion.

The order follows the DICOM grayscale pipeline (PS3.4 N.2): stored values -> modality LUT
(rescale slope/intercept) -> VOI LUT or window centre/width -> presentation. MONOCHROME1 stores
dense tissue as low values, so it is inverted last and breast tissue ends up bright, as in
MONOCHROME2. Patient name, id and birth date are never returned: the caller gets a salted hash of
the patient id for the patient key.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from pathlib import Path

import numpy as np

from curator.imaging import DecodedImage, UnreadableImage

SALT_FILE = "patient-salt"


def load_salt(home: Path) -> bytes:
    """Return this data home's secret salt for patient keys, creating it on first use."""
    path = home / SALT_FILE
    if path.exists():
        return path.read_bytes()
    home.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(32)
    path.write_bytes(salt)
    path.chmod(0o600)
    return salt


def hashed_patient_key(identity: str, salt: bytes) -> str:
    """Return the catalog's patient key for a DICOM patient id: a salted SHA-256, shortened."""
    return "dicom:" + hashlib.sha256(salt + identity.encode("utf-8")).hexdigest()[:24]


def _view_of(dataset) -> str | None:
    position = str(getattr(dataset, "ViewPosition", "") or "").upper()
    if position in ("CC", "XCC", "XCCL", "XCCM"):
        return "CC"
    if position in ("MLO", "ML", "LMO"):
        return "MLO"
    return None


def _side_of(dataset) -> str | None:
    laterality = str(getattr(dataset, "ImageLaterality", "") or getattr(dataset, "Laterality", "") or "").upper()
    return {"L": "LEFT", "R": "RIGHT"}.get(laterality)


def decode_dicom(data: bytes, name: str) -> DecodedImage:
    """Decode a DICOM file's bytes into display-ready pixels (16 bits unless the source is 8)."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        stored = dataset.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, OSError, KeyError) as error:
        raise UnreadableImage(f"cannot decode DICOM {Path(name).name}: {error}") from error
    if stored.ndim != 2:
        raise UnreadableImage(f"DICOM {Path(name).name} has {stored.ndim} dimensions; only single-frame grayscale is supported")

    values = apply_modality_lut(stored, dataset).astype(np.float64)
    has_voi = "VOILUTSequence" in dataset or "WindowCenter" in dataset
    if has_voi:
        values = np.asarray(apply_voi_lut(values, dataset, prefer_lut=True), dtype=np.float64)
    if str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        values = values.max() + values.min() - values

    bits_stored = int(dataset.get("BitsStored", 16))
    low, high = float(values.min()), float(values.max())
    if bits_stored <= 8:
        scale, dtype, bit_depth = 255.0, np.uint8, 8
    else:
        scale, dtype, bit_depth = 65535.0, np.uint16, 16
    if high > low:
        pixels = np.rint((values - low) * (scale / (high - low))).astype(dtype)
    else:
        pixels = np.zeros(values.shape, dtype=dtype)

    metadata = {
        "view": _view_of(dataset),
        "side": _side_of(dataset),
        "modality": str(dataset.get("Modality", "")) or None,
        "photometric": str(dataset.get("PhotometricInterpretation", "")) or None,
        "bits_stored": bits_stored,
        "voi_applied": bool(has_voi),
        # Held in memory only long enough to hash; the importer removes it before storing anything.
        "identity": str(dataset.get("PatientID", "")) or None,
    }
    return DecodedImage(pixels=pixels, bit_depth=bit_depth, file_format="dicom", dicom=metadata)
