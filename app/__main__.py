"""``python -m app``: start the SSL Inspect desktop app."""

from __future__ import annotations

import sys

from app.launch import main

sys.exit(main())
