"""The frame size of a project: what the camera writes, read from the scan's image index (no decoding).

Inspection runs at native resolution (a 1–2 px scratch must keep its pixels), so the presets take their image
size from here instead of a fixed 224 px.
"""

from __future__ import annotations

from collections import Counter

from sslinspect.store import ImageRecord

#: Largest side the defect-aware model trains and infers on by default; larger frames are shrunk to it (state it).
MAX_NATIVE_SIZE = 1024
#: Smallest side any backbone accepts.
MIN_SIZE = 32


def dominant_frame_size(records: list[ImageRecord]) -> tuple[int, int] | None:
    """The most common ``(width, height)`` among readable images, or None when none has a known size."""
    sizes = Counter((r.width, r.height) for r in records if r.width and r.height)
    if not sizes:
        return None
    (w, h), _ = sizes.most_common(1)[0]
    return int(w), int(h)


def native_image_size(frame: tuple[int, int] | None, *, multiple: int = 32, fallback: int = 256) -> int:
    """The square model input side for frames of ``frame = (width, height)``: the longer side, rounded down to a
    multiple of ``multiple`` (the backbone's total stride), within ``[MIN_SIZE, MAX_NATIVE_SIZE]``.

    Examples:
        >>> native_image_size((256, 256)), native_image_size((640, 480)), native_image_size(None)
        (256, 640, 256)
    """
    if frame is None:
        return fallback
    side = max(frame)
    return max(MIN_SIZE, min(MAX_NATIVE_SIZE, side - side % multiple))
