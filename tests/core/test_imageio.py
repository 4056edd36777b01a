"""Decoding to the canonical form (uint8 RGB, H×W×3) and the refusal of every kind of broken or hostile file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sslinspect.errors import ImageReadError
from sslinspect.imageio import (
    decode_bytes,
    extension_mismatch,
    header_size,
    read_image,
    resize_square,
    sniff_format,
)
from tests.core.image_cases import (
    BOMB_SIDE,
    bgr_image,
    bomb_bmp,
    bomb_jpeg,
    bomb_png,
    bomb_tiff,
    cmyk_jpeg,
    encode,
    palette_bmp,
    palette_png,
    smooth_image,
)

IMG = bgr_image()
RGB = np.ascontiguousarray(IMG[:, :, ::-1])


def _decode(data: bytes, **kw: int) -> np.ndarray:
    rgb, _ = decode_bytes(data, "x", **kw)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.flags.c_contiguous
    return rgb


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff"])
def test_lossless_formats_decode_to_rgb_exactly(ext: str) -> None:
    assert np.array_equal(_decode(encode(ext, IMG)), RGB)


def test_jpeg_decodes_to_rgb_within_compression_error() -> None:
    smooth = smooth_image()
    assert np.abs(_decode(encode(".jpg", smooth)).astype(int) - smooth[:, :, ::-1]).mean() < 3


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_16_bit_is_scaled_to_8_bit(ext: str) -> None:
    rgb, info = decode_bytes(encode(ext, IMG.astype(np.uint16) * 257), "x")
    assert info.bit_depth == 16 and np.array_equal(rgb, RGB)


def test_16_bit_gray_tiff_is_replicated_to_three_channels() -> None:
    rgb, info = decode_bytes(encode(".tiff", IMG[:, :, 0].astype(np.uint16) * 257), "x")
    assert info.channels == 1 and info.bit_depth == 16
    assert np.array_equal(rgb, np.repeat(IMG[:, :, :1], 3, axis=2))


def test_rgba_drops_alpha() -> None:
    rgba = np.dstack([IMG, np.zeros(IMG.shape[:2], np.uint8)])  # fully transparent: colour is kept anyway
    rgb, info = decode_bytes(encode(".png", rgba), "x")
    assert info.channels == 4 and np.array_equal(rgb, RGB)


def test_palette_png_and_bmp_are_expanded() -> None:
    for data in (palette_png(RGB), palette_bmp(RGB)):
        rgb = _decode(data)
        assert rgb.shape == RGB.shape and np.abs(rgb.astype(int) - RGB).mean() < 40  # palette quantisation


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    smooth = np.ascontiguousarray(smooth_image()[:, :, ::-1])
    rgb, info = decode_bytes(cmyk_jpeg(smooth), "x")
    assert info.format == "jpeg" and np.abs(rgb.astype(int) - smooth).mean() < 5


def test_one_pixel_image_decodes_and_resizes() -> None:
    rgb = _decode(encode(".png", IMG[:1, :1]))
    assert rgb.shape == (1, 1, 3)
    assert resize_square(rgb, 32).shape == (32, 32, 3)


def test_float_tiff_range_is_guessed_not_stretched_per_image() -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((IMG[:, :, 0] // 2).astype(np.float32), mode="F").save(buf, "TIFF")  # values 0..127
    rgb = _decode(buf.getvalue())
    assert np.array_equal(rgb[:, :, 0], IMG[:, :, 0] // 2)  # read as 0–255, not stretched to the max


def test_jpeg_with_bytes_after_the_end_marker_is_accepted() -> None:
    data = encode(".jpg", IMG) + b"camera maker notes after EOI" * 4
    assert _decode(data).shape == RGB.shape


def test_png_bytes_under_a_jpg_name_are_read_and_noted() -> None:
    _, info = decode_bytes(encode(".png", IMG), "part.jpg")
    assert info.format == "png"
    assert extension_mismatch("part.jpg", info.format) == "PNG data with a .jpg name (read as PNG)"
    assert extension_mismatch("part.PNG", "png") is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file (0 bytes)"),
        (b"hello, I am a text file\n", "a text file, not an image"),
        (bytes(range(256)) * 4, "not an image (unrecognised file signature)"),
        (b"GIF89a" + bytes(32), "GIF data, not a supported image format (PNG, JPEG, BMP, TIFF)"),
        (b"%PDF-1.7\n" + bytes(32), "PDF data, not a supported image format"),
        (encode(".png", IMG)[:40], "truncated PNG (file ends early)"),
        (encode(".png", IMG)[:-20], "truncated PNG (file ends early)"),
        (encode(".jpg", IMG)[:-300], "truncated JPEG (file ends early)"),
        (encode(".bmp", IMG)[:-100], "truncated BMP (file ends early)"),
        (encode(".tiff", IMG)[:-60], "truncated TIFF (file ends early)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(30), "corrupt PNG header"),
    ],
)
def test_bad_bytes_give_one_line_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(ImageReadError) as err:
        decode_bytes(data, "line3/cam1/0001.png")
    assert err.value.reason.startswith(reason)
    assert str(err.value).startswith("line3/cam1/0001.png: ") and "\n" not in str(err.value)


def test_corrupt_pixel_data_is_refused() -> None:
    data = bytearray(encode(".png", IMG))
    data[60:90] = bytes(30)  # inside IDAT: CRC and zlib stream broken
    with pytest.raises(ImageReadError, match="undecodable PNG data"):
        decode_bytes(bytes(data), "x")


@pytest.mark.parametrize(
    ("make", "fmt"), [(bomb_png, "png"), (bomb_jpeg, "jpeg"), (bomb_bmp, "bmp"), (bomb_tiff, "tiff")]
)
def test_decompression_bomb_is_refused_from_the_header(make, fmt: str) -> None:  # type: ignore[no-untyped-def]
    data = make()
    assert len(data) < 4096  # small on disk ...
    assert sniff_format(data[:16]) == fmt
    assert header_size(data, fmt) == (BOMB_SIDE, BOMB_SIDE)  # ... but declares 900 million pixels
    with pytest.raises(ImageReadError) as err:
        decode_bytes(data, "bomb")
    assert err.value.reason == "too large: 30000×30000 = 900,000,000 pixels exceeds the limit of 120,000,000"


def test_pixel_limit_is_configurable() -> None:
    data = encode(".png", IMG)  # 32×24 = 768 pixels
    assert _decode(data, max_pixels=768).shape == RGB.shape
    with pytest.raises(ImageReadError, match="exceeds the limit of 767"):
        decode_bytes(data, "x", max_pixels=767)


def test_read_image_reports_missing_folder_and_oversized_files(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)
    big = tmp_path / "big.png"
    big.write_bytes(encode(".png", IMG))
    with pytest.raises(ImageReadError, match=r"file too large \(0.0 MB > 0 MB\)"):
        read_image(big, max_bytes=100)


def test_read_image_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """chmod 000 does not stop root, so as root the PermissionError the OS would raise is injected instead."""
    path = tmp_path / "locked.png"
    path.write_bytes(encode(".png", IMG))
    path.chmod(0)
    try:
        if _can_read(path):  # running as root
            real = os.open

            def deny(file: str | Path, flags: int, *args: int, **kwargs: int) -> int:
                if Path(file).name == "locked.png":
                    raise PermissionError(errno.EACCES, "Permission denied", str(file))
                return real(file, flags, *args, **kwargs)

            monkeypatch.setattr(os, "open", deny)  # the bounded read opens the file with os.open
        with pytest.raises(ImageReadError) as err:
            read_image(path)
        assert str(err.value) == f"{path}: permission denied"
    finally:
        path.chmod(0o644)


def _can_read(path: Path) -> bool:
    try:
        with path.open("rb"):
            return True
    except PermissionError:
        return False


_SEEDS = [
    encode(".png", IMG),
    encode(".jpg", IMG),
    encode(".bmp", IMG),
    encode(".tiff", IMG),
    encode(".png", IMG.astype(np.uint16) * 257),
    palette_png(RGB),
    bomb_tiff(40),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    cut=st.integers(min_value=0, max_value=4000),
    edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
    insert=st.binary(max_size=16),
)
def test_mutated_files_decode_or_fail_cleanly(
    seed: bytes, cut: int, edits: list[tuple[int, int]], insert: bytes
) -> None:
    """Whatever the bytes, the result is a canonical image or an ImageReadError: never another exception."""
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    if insert:
        data[cut % len(data) : cut % len(data)] = insert
    elif cut:
        del data[cut % len(data) :]
    try:
        rgb, info = decode_bytes(bytes(data), "fuzz", max_pixels=10_000)
    except ImageReadError as exc:
        assert exc.reason and "\n" not in exc.reason
        return
    assert rgb.dtype == np.uint8 and rgb.shape == (info.height, info.width, 3)
