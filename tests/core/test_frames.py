"""Native resolution: the scan reports the dominant frame size and ``image_size = 0`` trains at it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sslinspect import api
from sslinspect.config import PretrainConfig
from sslinspect.data.frames import MAX_NATIVE_SIZE, native_image_size
from sslinspect.model.checkpoint import load_checkpoint
from sslinspect.runs import latest_checkpoint


def _write(folder: Path, n: int, w: int, h: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(n):
        cv2.imwrite(str(folder / f"f{start + i:03d}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_native_size_is_the_longer_side_rounded_to_the_stride_and_capped() -> None:
    assert native_image_size((256, 256)) == 256
    assert native_image_size((300, 200)) == 288
    assert native_image_size((5000, 4000)) == MAX_NATIVE_SIZE
    assert native_image_size((20, 20)) == 32
    assert native_image_size(None) == 256


def test_scan_reports_the_dominant_frame_size_and_pretrain_uses_it(tmp_path: Path) -> None:
    images = tmp_path / "images"
    _write(images, 10, 96, 96)
    _write(images, 3, 64, 48, start=100)
    project = api.create_project(tmp_path / "p.sslproj", images=[images])
    try:
        result = api.scan_images(project)
        assert result.frame_size == (96, 96)
        cfg = PretrainConfig(
            method="synthdefect", backbone="tiny_cnn", image_size=0, epochs=1, batch_size=4, device="cpu"
        )
        api.pretrain(project, cfg)
        ckpt = load_checkpoint(latest_checkpoint(project))
        assert ckpt["image_size"] == 96  # native: no frame was shrunk
    finally:
        project.close()
