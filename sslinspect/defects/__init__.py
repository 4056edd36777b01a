"""Naming defects, torch-free (numpy + OpenCV): locate regions in an anomaly map, describe them, type them from a
few labels with an open-set ``unknown``. The line-side predictor runs this same code (see docs/typing.md)."""
