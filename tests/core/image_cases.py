"""Generators for the odd and broken image files that real production folders contain (used by several tests).

Everything is made here from numpy arrays with OpenCV; Pillow (installed with torchvision) is used only for what
OpenCV cannot write: CMYK JPEG and palette PNG/BMP.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

BOMB_SIDE = 30_000


def bgr_image(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    """A seeded BGR uint8 test image."""
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def smooth_image(h: int = 24, w: int = 32) -> np.ndarray:
    """A BGR gradient: JPEG reproduces it closely (noise would not survive chroma subsampling)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.dstack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)]).astype(np.uint8)


def encode(ext: str, arr: np.ndarray) -> bytes:
    """``cv2.imencode`` as bytes."""
    ok, buf = cv2.imencode(ext, arr)
    assert ok, ext
    return buf.tobytes()


def _pil(rgb: np.ndarray, mode: str, fmt: str, **kw: object) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buf, fmt, **kw)
    return buf.getvalue()


def cmyk_jpeg(rgb: np.ndarray) -> bytes:
    """A CMYK JPEG of ``rgb`` (as written by print-oriented software)."""
    return _pil(rgb, "CMYK", "JPEG", quality=95)


def palette_png(rgb: np.ndarray) -> bytes:
    """An 8-bit palette PNG of ``rgb``."""
    return _pil(rgb, "P", "PNG")


def palette_bmp(rgb: np.ndarray) -> bytes:
    """An 8-bit palette BMP of ``rgb``."""
    return _pil(rgb, "P", "BMP")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid-looking PNG whose header declares ``side``×``side`` pixels (a few hundred bytes on disk)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (side + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def bomb_jpeg(side: int = BOMB_SIDE) -> bytes:
    """A real JPEG with its frame header (SOF0) rewritten to declare ``side``×``side``."""
    data = bytearray(encode(".jpg", bgr_image()))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def bomb_bmp(side: int = BOMB_SIDE) -> bytes:
    """A real BMP with its info header rewritten to declare ``side``×``side``."""
    data = bytearray(encode(".bmp", bgr_image()))
    data[18:26] = struct.pack("<ii", side, side)
    return bytes(data)


def bomb_tiff(side: int = BOMB_SIDE) -> bytes:
    """A minimal baseline TIFF (8-bit gray, one strip) declaring ``side``×``side``."""
    pixels = b"\x00" * 64
    entries = [
        (256, 4, 1, side),  # ImageWidth
        (257, 4, 1, side),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (278, 4, 1, side),  # RowsPerStrip
        (279, 4, 1, len(pixels)),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_at = 8 + ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, n, value in entries:
        value = strip_at if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, n) + packed
    out += struct.pack("<I", 0) + pixels
    return bytes(out)


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (creating folders) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


#: name → expected reason fragment (None = readable). Written by :func:`write_messy_folder`.
MESSY_BAD = {
    "zero.png": "empty file (0 bytes)",
    "notes.png": "a text file, not an image",
    "random.jpg": "not an image",
    "truncated.png": "truncated PNG",
    "truncated.jpg": "truncated JPEG",
    "truncated.bmp": "truncated BMP",
    "truncated.tif": "truncated TIFF",
    "bomb.png": "too large: 30000×30000",
    "bomb.jpg": "too large: 30000×30000",
    "animation.png": "GIF data, not a supported image format",
}
MESSY_GOOD = (
    "plain.png",
    "png_bytes.jpg",
    "cmyk.jpg",
    "deep16.png",
    "deep16.tif",
    "alpha.png",
    "palette.png",
    "palette.bmp",
    "gray.bmp",
    "one_pixel.png",
    "UPPER.PNG",
    "Space in name ä ö 日本.png",
    "sub dir/nested.tiff",
)


def write_messy_folder(root: Path) -> Path:
    """Write every case of :data:`MESSY_GOOD` and :data:`MESSY_BAD` (plus a hidden file) under ``root``."""
    img = bgr_image()
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    png = encode(".png", img)
    jpg = encode(".jpg", bgr_image(seed=1))
    bmp = encode(".bmp", bgr_image(seed=2))
    tif = encode(".tiff", bgr_image(seed=3))
    files = {
        "plain.png": png,
        "png_bytes.jpg": encode(".png", bgr_image(seed=4)),
        "cmyk.jpg": cmyk_jpeg(np.ascontiguousarray(bgr_image(seed=5)[:, :, ::-1])),
        "deep16.png": encode(".png", bgr_image(seed=6).astype(np.uint16) * 257),
        "deep16.tif": encode(".tiff", bgr_image(seed=7)[:, :, 0].astype(np.uint16) * 257),
        "alpha.png": encode(".png", np.dstack([bgr_image(seed=8), np.full((24, 32), 128, np.uint8)])),
        "palette.png": palette_png(rgb),
        "palette.bmp": palette_bmp(np.ascontiguousarray(bgr_image(seed=9)[:, :, ::-1])),
        "gray.bmp": encode(".bmp", bgr_image(seed=10)[:, :, 0]),
        "one_pixel.png": encode(".png", bgr_image(1, 1, seed=11)),
        "UPPER.PNG": encode(".png", bgr_image(seed=12)),
        "Space in name ä ö 日本.png": encode(".png", bgr_image(seed=13)),
        "sub dir/nested.tiff": encode(".tiff", bgr_image(seed=14)),
        "zero.png": b"",
        "notes.png": b"this is not an image\nbut someone named it .png\n",
        "random.jpg": np.random.default_rng(5).bytes(3000),
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.bmp": bmp[: len(bmp) // 2],
        "truncated.tif": tif[: len(tif) // 2],
        "bomb.png": bomb_png(),
        "bomb.jpg": bomb_jpeg(),
        "animation.png": b"GIF89a" + b"\x00" * 64,
        "._plain.png": b"\x00\x05\x16\x07AppleDouble resource fork, not an image",
    }
    for name, data in files.items():
        write(root / name, data)
    return root
