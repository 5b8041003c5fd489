"""Reading mammogram files into arrays and making the working-resolution derivative.

JPEG, PNG (8 and 16 bit), PGM and DICOM are read into a 2-D ``uint8`` or ``uint16`` array. The
working derivative is a square 8-bit image (128x128 by default). By default the film is
stretched to the square, as the reference study did, so every pixel of the derivative carries
breast or film; ``fit="pad"`` keeps the aspect ratio instead and pads the short side with black
(the film background) on the side away from the chest wall.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

FIT_MODES = ("stretch", "pad")
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".tif", ".tiff", ".bmp") + DICOM_SUFFIXES


class UnreadableImage(Exception):
    """A file could not be decoded as an image; the message names the reason in one line."""


@dataclass
class DecodedImage:
    """Pixels of one file plus what the catalog records about its encoding."""

    pixels: np.ndarray
    bit_depth: int
    file_format: str
    dicom: dict | None = None
    # (height, width) of the file when ``pixels`` was decoded at a reduced scale.
    full_shape: tuple[int, int] | None = None


def sha256_of_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def decode_bytes(data: bytes, name: str) -> DecodedImage:
    """Decode the bytes of an image file; ``name`` gives the format by its suffix."""
    suffix = Path(name).suffix.lower()
    if suffix in DICOM_SUFFIXES:
        from curator.dicom import decode_dicom

        return decode_dicom(data, name)
    try:
        with PILImage.open(io.BytesIO(data)) as opened:
            file_format = (opened.format or suffix.lstrip(".")).lower()
            # Pillow decodes lazily; load() forces the whole file so truncation is caught here.
            opened.load()
            image = opened
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = np.asarray(image, dtype=np.int64)
                maximum = int(pixels.max()) if pixels.size else 0
                bit_depth = 16 if maximum > 255 or image.mode.startswith("I;16") else 8
                pixels = pixels.clip(0, 65535).astype(np.uint16 if bit_depth == 16 else np.uint8)
            else:
                if image.mode != "L":
                    image = image.convert("L")
                pixels = np.asarray(image, dtype=np.uint8)
                bit_depth = 8
    except PILImage.UnidentifiedImageError as error:
        raise UnreadableImage("not a readable image (unknown or corrupt format)") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage(f"cannot decode image: {error}") from error
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise UnreadableImage(f"image has unusable shape {pixels.shape}")
    return DecodedImage(pixels=np.ascontiguousarray(pixels), bit_depth=bit_depth, file_format=file_format)


def decode_jpeg_reduced(data: bytes, work_size: int) -> DecodedImage:
    """Decode a JPEG at the smallest 1/2, 1/4 or 1/8 scale that still covers ``work_size``.

    libjpeg scales in the DCT domain, which averages like a box filter and skips most of the
    work, so the working derivative costs a fraction of a full decode. The decoder accepts a
    truncated file silently (grey fill), so a missing end-of-image marker is rejected first.
    """
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise UnreadableImage("truncated JPEG (no end-of-image marker)")
    try:
        with PILImage.open(io.BytesIO(data)) as header:
            width, height = header.size
    except (PILImage.UnidentifiedImageError, OSError) as error:
        raise UnreadableImage("not a readable image (unknown or corrupt format)") from error
    reduction = 1
    while reduction < 8 and min(width, height) // (reduction * 2) >= work_size:
        reduction *= 2
    flag = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[reduction]
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if pixels is None or pixels.ndim != 2:
        raise UnreadableImage("cannot decode JPEG")
    return DecodedImage(pixels=pixels, bit_depth=8, file_format="jpeg", full_shape=(height, width))


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Rescale a 16-bit (or wider) array to 8 bits over its own range, never clipping."""
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def chest_wall_on_left(pixels: np.ndarray) -> bool:
    """Guess whether the breast is attached to the image's left edge (brighter left half)."""
    width = pixels.shape[1]
    return float(pixels[:, : width // 2].mean()) >= float(pixels[:, width // 2 :].mean())


def working_copy(pixels: np.ndarray, size: int, fit: str = "stretch") -> np.ndarray:
    """Return the square 8-bit working derivative of a full-resolution image."""
    if fit not in FIT_MODES:
        raise ValueError(f"unknown fit mode {fit!r}; expected one of {', '.join(FIT_MODES)}")
    image8 = to_uint8(pixels)
    if fit == "pad":
        height, width = image8.shape
        edge = max(height, width)
        canvas = np.zeros((edge, edge), dtype=np.uint8)
        top = (edge - height) // 2
        # Keep the chest wall against its own border so padding never splits the breast.
        left = 0 if chest_wall_on_left(image8) else edge - width
        canvas[top : top + height, left : left + width] = image8
        image8 = canvas
    return cv2.resize(image8, (size, size), interpolation=cv2.INTER_AREA)


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode a 2-D uint8 or uint16 array as PNG bytes."""
    ok, buffer = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_gray(path: Path) -> np.ndarray:
    """Read an image file from disk as a 2-D array (uint8, or uint16 for 16-bit sources)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UnreadableImage(f"cannot read {path}: {error.strerror or error}") from error
    return decode_bytes(data, str(path)).pixels


def read_work(path: Path) -> np.ndarray:
    """Read a working-resolution PNG as a 2-D uint8 array."""
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        raise UnreadableImage(f"cannot read working image {path}")
    return pixels
