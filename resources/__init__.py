"""Non-code assets of the desktop app (icons, style sheet), loaded with importlib.resources."""
