"""Image decoding into one canonical form: ``uint8`` RGB, shape ``(H, W, 3)``.

Rules (documented in docs/data.md): grayscale is replicated to 3 channels; 16-bit samples are scaled linearly to
8 bit (``v * 255 / 65535``); alpha is dropped; palette images are expanded; CMYK JPEGs are converted by the decoder.
Image dimensions are checked from the file header *before* decoding (decompression-bomb guard).

This module needs only numpy and OpenCV: the line-side predictor uses it without torch.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sslinspect.errors import ImageReadError
from sslinspect.safeio import FileRefused, read_bounded

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS = 120_000_000

cv2.setNumThreads(1)  # decoding runs in our own thread pools; OpenCV's own threads would oversubscribe 2 cores
# A corrupt file is reported once, by us, naming the file; OpenCV would also print its own "[ERROR] imdecode_" line.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)

#: Signatures of formats we do not read, for a precise message instead of "not an image".
_OTHER_FORMATS = (
    (b"GIF8", "GIF"),
    (b"RIFF", "WebP/RIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"8BPS", "Photoshop"),
)
_EXT_FORMAT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff"}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What decoding learnt about a file."""

    width: int
    height: int
    channels: int
    bit_depth: int
    format: str
    sha256: str


def sniff_format(head: bytes) -> str | None:
    """Format from the first bytes: ``png``, ``jpeg``, ``bmp``, ``tiff`` or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    return None


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """``(width, height)`` from the header without decoding pixels, or None when it cannot be read."""
    try:
        if fmt == "png":
            if data[12:16] != b"IHDR":
                return None
            w, h = struct.unpack(">II", data[16:24])
            return int(w), int(h)
        if fmt == "bmp":
            (dib,) = struct.unpack("<I", data[14:18])
            if dib == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
                w, h = struct.unpack("<HH", data[18:22])
            else:
                w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "tiff":
            return _tiff_size(data)
    except (struct.error, IndexError, ValueError):  # a header field points outside the file
        return None
    return None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """``(marker, offset)`` of each header segment up to and including the first start-of-scan (SOS)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        yield marker, i
        if marker == 0xDA:
            return
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, i in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
    return None


_TIFF_TAGS = {
    256: "width",
    257: "height",
    273: "strip_offsets",
    279: "strip_counts",
    324: "tile_offsets",
    325: "tile_counts",
}


def _tiff_fields(data: bytes) -> dict[str, list[int]]:
    """The size and data-location fields of a TIFF's first image (SHORT/LONG values only)."""
    bo = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(bo + "I", data[4:8])
    (count,) = struct.unpack(bo + "H", data[ifd : ifd + 2])
    out: dict[str, list[int]] = {}
    for k in range(min(count, 512)):
        e = ifd + 2 + 12 * k
        tag, typ, n = struct.unpack(bo + "HHI", data[e : e + 8])
        if tag not in _TIFF_TAGS or typ not in (3, 4) or n > 1_000_000:
            continue
        code, width = ("H", 2) if typ == 3 else ("I", 4)
        if n * width <= 4:
            at = e + 8
        else:
            (at,) = struct.unpack(bo + "I", data[e + 8 : e + 12])
        values = struct.unpack(f"{bo}{n}{code}", data[at : at + n * width])
        out[_TIFF_TAGS[tag]] = [int(v) for v in values]
    return out


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    f = _tiff_fields(data)
    if not f.get("width") or not f.get("height"):
        return None
    return f["width"][0], f["height"][0]


def _looks_truncated(data: bytes, fmt: str) -> bool:
    """True when the file provably ends before its last structure (decoders would return a partial image)."""
    try:
        if fmt == "jpeg":
            # The end-of-image marker must follow the main image's scan data. Bytes after it (maker notes, a
            # second preview) are allowed; FF D9 cannot occur inside entropy-coded data (FF is byte-stuffed).
            sos = [i for marker, i in _jpeg_segments(data) if marker == 0xDA]
            return not sos or data.find(b"\xff\xd9", sos[0]) < 0
        if fmt == "png":
            i = 8
            while i + 8 <= len(data):
                (length,) = struct.unpack(">I", data[i : i + 4])
                if data[i + 4 : i + 8] == b"IEND":
                    return False
                i += 12 + length
            return True
        if fmt == "bmp":
            (declared,) = struct.unpack("<I", data[2:6])
            (offset,) = struct.unpack("<I", data[10:14])
            return len(data) < min(declared, 2**31) or len(data) <= offset
        if fmt == "tiff":
            f = _tiff_fields(data)
            ends = [
                offset + count
                for key in ("strip", "tile")
                for offset, count in zip(f.get(f"{key}_offsets", []), f.get(f"{key}_counts", []), strict=False)
            ]
            return bool(ends) and max(ends) > len(data)
    except (struct.error, IndexError, ValueError):
        return True
    return False


def _header_cut_short(data: bytes, fmt: str) -> bool:
    """True when an unreadable header is a correct header that stops early (rather than a wrong one)."""
    if fmt == "png":
        return len(data) < 24 and b"IHDR".startswith(data[12:16])
    if fmt == "bmp":
        return len(data) < 26
    if fmt == "jpeg":
        return not any(marker == 0xDA for marker, _ in _jpeg_segments(data))
    bo = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(bo + "I", data[4:8])
        (count,) = struct.unpack(bo + "H", data[ifd : ifd + 2])
    except struct.error:
        return True
    return ifd + 2 + 12 * count > len(data)


def describe_unknown(head: bytes) -> str:
    """Why ``head`` (the first bytes of a file) is not a supported image, in a few words."""
    for sig, name in _OTHER_FORMATS:
        if head.startswith(sig):
            return f"{name} data, not a supported image format (PNG, JPEG, BMP, TIFF)"
    sample = head[:256]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample.removeprefix(b"\xef\xbb\xbf")):
        return "a text file, not an image"
    return "not an image (unrecognised file signature)"


def extension_mismatch(path: Path | str, fmt: str) -> str | None:
    """A note when the file's content format differs from what its extension says (the file is still read)."""
    suffix = Path(path).suffix.lower()
    expected = _EXT_FORMAT.get(suffix)
    if expected is None or expected == fmt:
        return None
    return f"{fmt.upper()} data with a {suffix} name (read as {fmt.upper()})"


def decode_bytes(data: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, ImageInfo]:
    """Decode an encoded image to canonical ``uint8`` RGB.

    Args:
        data: The file's bytes.
        name: Shown in error messages (usually the path).
        max_pixels: Refuse images whose header declares more pixels than this.

    Returns:
        The ``(H, W, 3)`` uint8 array and what was learnt about the file.

    Raises:
        ImageReadError: with a short reason (empty file, not an image, truncated, too large, undecodable).
    """
    if not data:
        raise ImageReadError(name, "empty file (0 bytes)")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise ImageReadError(name, describe_unknown(data[:512]))
    size = header_size(data, fmt)
    if size is None:
        if _header_cut_short(data, fmt):
            raise ImageReadError(name, f"truncated {fmt.upper()} (file ends early)")
        raise ImageReadError(name, f"corrupt {fmt.upper()} header")
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageReadError(name, f"invalid image size {w}×{h}")
    if w * h > max_pixels:
        raise ImageReadError(name, f"too large: {w}×{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}")
    if _looks_truncated(data, fmt):
        raise ImageReadError(name, f"truncated {fmt.upper()} (file ends early)")
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise ImageReadError(name, f"undecodable {fmt.upper()} data")
    rgb, channels, depth = to_canonical(arr, name)
    info = ImageInfo(
        width=int(rgb.shape[1]),
        height=int(rgb.shape[0]),
        channels=channels,
        bit_depth=depth,
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return rgb, info


def to_canonical(arr: np.ndarray, name: str = "image") -> tuple[np.ndarray, int, int]:
    """Convert a decoder output (BGR/BGRA/gray, 8/16-bit or float) to ``uint8`` RGB.

    Returns:
        ``(rgb, source_channels, source_bit_depth)``.
    """
    channels = 1 if arr.ndim == 2 else int(arr.shape[2])
    if arr.dtype == np.uint8:
        depth = 8
    elif arr.dtype == np.uint16:
        depth = 16
        arr = ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif arr.dtype in (np.float32, np.float64):
        # Float TIFFs: the range is guessed from the largest value (0–1, 0–255, 0–65535, else the image's max).
        depth = 32 if arr.dtype == np.float32 else 64
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(arr.max()) if arr.size else 1.0
        full = next((r for r in (1.0, 255.0, 65535.0) if hi <= r), hi)
        arr = np.clip(arr * (255.0 / full) + 0.5, 0, 255).astype(np.uint8)
    else:
        raise ImageReadError(name, f"unsupported sample type {arr.dtype}")
    if arr.ndim == 2:
        rgb = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    elif channels == 1:
        rgb = cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    elif channels == 2:
        rgb = cv2.cvtColor(np.ascontiguousarray(arr[:, :, 0]), cv2.COLOR_GRAY2RGB)
    elif channels == 3:
        rgb = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    elif channels == 4:
        rgb = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    else:
        raise ImageReadError(name, f"unsupported channel count {channels}")
    return np.ascontiguousarray(rgb), channels, depth


def read_image(
    path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = 512 * 2**20
) -> tuple[np.ndarray, ImageInfo]:
    """Read and decode one file to canonical ``uint8`` RGB.

    Raises:
        ImageReadError: naming the file and the problem (missing, unreadable, too big, not an image, ...).
    """
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            raise ImageReadError(name, f"file too large ({size / 2**20:.1f} MB > {max_bytes / 2**20:.0f} MB)")
        data = read_bounded(path, max_bytes)  # regular files only: a FIFO or device is refused, never waited on
    except FileRefused as exc:
        raise ImageReadError(name, exc.reason) from None
    except FileNotFoundError:
        raise ImageReadError(name, "file not found") from None
    except PermissionError:
        raise ImageReadError(name, "permission denied") from None
    except IsADirectoryError:
        raise ImageReadError(name, "is a folder") from None
    except OSError as exc:
        raise ImageReadError(name, f"unreadable ({exc.strerror or exc})") from None
    return decode_bytes(data, name, max_pixels=max_pixels)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize canonical RGB to ``size``×``size`` (the one resize used by training, preview and predict).

    The aspect ratio is not kept: a fixed camera gives every image the same distortion, and cropping could cut a
    defect at the border. Area interpolation when shrinking (anti-aliased), linear when enlarging.
    """
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=interp))


def load_for_model(path: Path, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` and resize it for a model input of ``size`` px: ``uint8 (size, size, 3)``."""
    rgb, _ = read_image(path, max_pixels=max_pixels)
    return resize_square(rgb, size)
