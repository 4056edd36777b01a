"""The GUI's second facade: Qt-free, torch-free, read-only views of a project and its runs (numpy only).

Beside :mod:`sslinspect.api` (which runs and changes things), ``app/`` imports these views and nothing else of the
core but ``config``, ``events`` and ``errors`` (an import-linter contract says so):

- :mod:`~sslinspect.review.status`: what the project holds and which steps are possible; the decoded-image cache;
- :mod:`~sslinspect.review.analysis`: the per-image results of a few-shot run and the thresholds the next export uses;
- :mod:`~sslinspect.review.orderings`: grid orderings (unusual, uncertain, cluster, similar) and a 2-D map;
- :mod:`~sslinspect.review.curves`: ROC/PR of the anomaly score and what a threshold does;
- :mod:`~sslinspect.review.colours`: class colours;
- :mod:`~sslinspect.review.heatmaps`: the stored held-out anomaly maps as overlays;
- :mod:`~sslinspect.review.regions`: the example regions of each cell of the defect-type confusion;
- :mod:`~sslinspect.review.suggestions`: per defect type, the unlabelled images named nearest to it;
- ``SURE_AGREE_TEXT``: how a note words the typing head's agreement rule (the fit's log note says the same);
- ``cuts_text``: the region cuts a typing head names from, as a person reads them.
"""

from __future__ import annotations

from sslinspect.defects.typing_head import SURE_AGREE_TEXT, cuts_text
from sslinspect.imageio import read_image
from sslinspect.infer.output import heatmap_name
from sslinspect.review.analysis import (
    Analysis,
    ExportThresholds,
    export_thresholds,
    latest_export_thresholds,
    load_analysis,
)
from sslinspect.review.colours import set_class_color
from sslinspect.review.curves import Curves, ThresholdEffect, label_list, score_curves, threshold_effect
from sslinspect.review.heatmaps import RunHeatmaps
from sslinspect.review.orderings import SORT_KEYS, SortKey, cluster_order, kmeans, nearest, order_ids, project_2d
from sslinspect.review.regions import RegionExample, draw_box, region_examples, region_thumbnail
from sslinspect.review.status import MIN_IMAGES, ProjectStatus, existing_cache, project_status
from sslinspect.review.suggestions import Suggestion, load_suggestions
from sslinspect.runs import read_events

__all__ = [
    "MIN_IMAGES",
    "SORT_KEYS",
    "SURE_AGREE_TEXT",
    "Analysis",
    "Curves",
    "ExportThresholds",
    "ProjectStatus",
    "RegionExample",
    "RunHeatmaps",
    "SortKey",
    "Suggestion",
    "ThresholdEffect",
    "cluster_order",
    "cuts_text",
    "draw_box",
    "existing_cache",
    "export_thresholds",
    "heatmap_name",
    "kmeans",
    "label_list",
    "latest_export_thresholds",
    "load_analysis",
    "load_suggestions",
    "nearest",
    "order_ids",
    "project_2d",
    "project_status",
    "read_events",
    "read_image",
    "region_examples",
    "region_thumbnail",
    "score_curves",
    "set_class_color",
    "threshold_effect",
]
