"""The queries behind the app's label and review views: status, analysis loading, orderings, curves, colours."""

from __future__ import annotations

import csv
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslinspect import api
from sslinspect.errors import DataError, ProjectError
from sslinspect.review import (
    cluster_order,
    existing_cache,
    kmeans,
    nearest,
    order_ids,
    project_2d,
    score_curves,
    threshold_effect,
)


def _fake_fewshot_run(project: api.Project, ids: list[int], anomaly: list[float], conf: list[float]) -> Path:
    """A few-shot run folder in the layout `sslinspect train` writes (scores.csv, metrics.json, embeddings)."""
    run = project.new_run_dir("fewshot", "test")
    with (run / "scores.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "relpath", "anomaly_score", "label", "confidence", "p_good", "p_disc"])
        for i, a, c in zip(ids, anomaly, conf, strict=True):
            w.writerow([i, f"{i}.png", a, "good", c, c, 1 - c])
    (run / "metrics.json").write_text(json.dumps({"classes": ["good", "disc"], "threshold": 0.5}), encoding="utf-8")
    (run / "head.npz").write_bytes(b"")
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(ids), 8)).astype(np.float32)
    emb[1] = emb[0] + 0.01  # row 1 is the near-duplicate of row 0
    np.save(run / "embeddings.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    np.save(run / "embedding_ids.npy", np.array(ids, np.int64))
    project.set_latest("fewshot", run)
    return run


def test_project_status_follows_scan_labels_and_runs(project_dir: Path, tiny_image_folder: Path) -> None:
    (tiny_image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    project = api.create_project(project_dir, images=[tiny_image_folder])
    st = api.project_status(project)
    assert (st.images, st.can_pretrain, st.checkpoint, st.fewshot_run) == (0, False, None, None)
    api.scan_images(project)
    project.store.set_label(project.store.images()[0].id, "good")
    run = project.new_run_dir("pretrain", "simclr")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "status.json").write_text('{"state": "cancelled"}', encoding="utf-8")
    st = api.project_status(project)
    assert (st.images, st.unreadable, st.labels, st.can_pretrain) == (36, 1, {"good": 1}, True)
    assert st.checkpoint == run / "checkpoints" / "last.pt"
    assert st.pretrain_state == "cancelled" and st.can_resume


def test_a_killed_pretraining_run_shows_as_interrupted(project_dir: Path) -> None:
    """A run whose process died keeps "running" in status.json; the review reads it as runs.read_status does."""
    project = api.create_project(project_dir)
    run = project.new_run_dir("pretrain", "simclr")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)  # that process has exited
    status = {"state": "running", "pid": dead, "host": platform.node()}
    (run / "status.json").write_text(json.dumps(status), encoding="utf-8")
    project.set_latest("pretrain", run)
    st = api.project_status(project)
    assert st.pretrain_state == "interrupted" and st.can_resume
    assert [r.status for r in api.compare(project)] == ["interrupted"]  # `sslinspect compare` reads it the same way


def test_analysis_orders_unusual_uncertain_and_similar(project_dir: Path) -> None:
    project = api.create_project(project_dir)
    assert api.load_analysis(project) is None
    ids = [10, 11, 12, 13, 14]
    _fake_fewshot_run(project, ids, [0.1, 0.9, 0.5, 0.3, 0.7], [0.9, 0.6, 0.99, 0.5, 0.8])
    a = api.load_analysis(project)
    assert a is not None and a.classes == ("good", "disc") and a.threshold == 0.5
    grid = np.array([14, 13, 99, 12, 11, 10])  # 99 is not in the analysis: it goes last
    assert order_ids(grid, "file", a).tolist() == grid.tolist()
    assert order_ids(grid, "unusual", a).tolist() == [11, 14, 12, 13, 10, 99]
    assert order_ids(grid, "uncertain", a).tolist() == [13, 11, 14, 10, 12, 99]
    similar = order_ids(grid, "similar", a, ref_id=10)
    assert similar[:2].tolist() == [10, 11] and similar[-1] == 99
    clustered = order_ids(grid, "cluster", a, clusters=2)
    assert sorted(clustered.tolist()) == sorted(grid.tolist()) and clustered[-1] == 99
    with pytest.raises(DataError, match="choose an image"):
        order_ids(grid, "similar", a)
    with pytest.raises(DataError, match="needs a trained model"):
        order_ids(grid, "unusual", None)


def test_kmeans_separates_blobs_and_cluster_order_puts_representatives_first() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal(5, 0.1, (10, 2))]).astype(np.float32)
    assign, centres = kmeans(x, 2, seed=0)
    assert len(set(assign[:30].tolist())) == 1 and len(set(assign[30:].tolist())) == 1 and assign[0] != assign[-1]
    assert np.allclose(np.sort(centres[:, 0]), [0, 5], atol=0.2)
    rows, cl = cluster_order(x, 2)
    assert set(rows[:30].tolist()) == set(range(30))  # the larger cluster comes first
    d = np.linalg.norm(x[:30] - x[:30].mean(0), axis=1)
    assert rows[0] == int(d.argmin())
    assert cl.shape == (40,)


def test_nearest_ranks_by_cosine_similarity() -> None:
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    assert nearest(x, 0).tolist() == [0, 1, 2, 3]
    assert nearest(x, 0, k=2).tolist() == [0, 1]


def test_project_2d_matches_svd_pca_up_to_sign() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 16)) * np.linspace(3, 0.1, 16)
    xy = project_2d(x.astype(np.float32), chunk=128)
    xc = x - x.mean(0)
    ref = xc @ np.linalg.svd(xc, full_matrices=False)[2][:2].T
    assert np.allclose(np.abs(xy), np.abs(ref), atol=1e-3)


def test_score_curves_match_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.2
    s = rng.normal(size=200) + y * 1.5
    s[:10] = 0.25  # ties
    c = score_curves(s, y)
    assert c.auroc == pytest.approx(roc_auc_score(y, s))
    assert c.fpr[0] == 0 and c.tpr[-1] == 1 and c.fpr[-1] == 1
    assert np.all(np.diff(c.fpr) >= 0) and np.all(np.diff(c.tpr) >= 0)
    with pytest.raises(DataError):
        score_curves(s, np.zeros(200, bool))


def test_threshold_effect_counts_flags_recall_and_false_alarms() -> None:
    e = threshold_effect(np.array([0.1, 0.2, 0.8, 0.9]), 0.5, ["good", None, "crack", "good"])
    assert (e.flagged, e.recall, e.false_alarms) == (0.5, 1.0, 0.5)
    assert threshold_effect(np.array([0.1]), 0.5, [None]).recall is None


def test_set_class_color_validates_and_persists(project_dir: Path) -> None:
    project = api.create_project(project_dir)
    project.add_classes(["crack"])
    api.set_class_color(project, "crack", "#A0B0C0")
    assert api.open_project(project_dir).class_colors()["crack"] == "#a0b0c0"
    with pytest.raises(ProjectError, match="colour"):
        api.set_class_color(project, "crack", "red")
    with pytest.raises(ProjectError, match="unknown class"):
        api.set_class_color(project, "nope", "#000000")


def test_existing_cache_reads_the_smallest_big_enough_cache(project_dir: Path, tiny_image_folder: Path) -> None:
    from sslinspect.data.cache import build_cache

    project = api.create_project(project_dir, images=[tiny_image_folder])
    api.scan_images(project)
    assert existing_cache(project) is None
    build_cache(project, 32)
    built = build_cache(project, 48)
    build_cache(project, 96)
    found = existing_cache(project, min_size=40)
    assert found is not None
    images, rows, size = found
    assert size == 48 and len(rows) == 36
    first = built.ids[0]
    assert np.array_equal(images[rows[first]], built.images[0])
    assert existing_cache(project, min_size=200) is None
