"""Reusable widgets: plots, the thumbnail grid, config forms, the log view, dialogs."""
