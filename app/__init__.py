"""SSL Inspect desktop app (PySide6): the wizard over the sslinspect core."""
