"""``python -m sslinspect`` runs the command line.

``python -m`` puts the current folder first on ``sys.path``, so a ``numpy.py`` or ``cv2.py`` lying in the folder the
worker was started from (a project or image folder, say) would be imported instead of the real package. That entry
is dropped before anything else is imported (launching with ``python -P -m sslinspect`` avoids it altogether, and
also protects the ``sslinspect`` package itself).
"""

from __future__ import annotations

import sys
from pathlib import Path

if not sys.flags.safe_path and sys.path and sys.path[0] in ("", str(Path.cwd())):
    del sys.path[0]

from sslinspect.cli import main

if __name__ == "__main__":
    sys.exit(main())
