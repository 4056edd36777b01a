"""SSL Inspect: self-supervised visual defect inspection, from unlabeled images to a line-side ONNX model.

The core library (no Qt). Start with :mod:`sslinspect.api`; the command line is ``sslinspect`` (``python -m
sslinspect``). Importing this package does not import torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
