"""Typed exceptions raised by the core; the CLI maps them to one-line messages and exit codes."""

from __future__ import annotations


class SSLInspectError(Exception):
    """Base class of every error the core raises on purpose.

    The message is one line that names the file (when there is one) and the problem, so the CLI and the GUI can show
    it as-is.
    """


class ConfigError(SSLInspectError, ValueError):
    """A configuration value or command-line option is out of range or malformed."""


class ProjectError(SSLInspectError):
    """A project folder is missing, corrupt, of an unknown schema version, or not writable."""


class DataError(SSLInspectError):
    """Images or label files are missing, empty or unreadable."""


class ImageReadError(DataError):
    """One image file could not be decoded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str) -> None:
        """Build the error for ``path`` with a short ``reason`` such as ``"truncated"``."""
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class CheckpointError(SSLInspectError):
    """A checkpoint or weights file is missing, corrupt, untrusted or does not fit the model."""


class ExportError(SSLInspectError):
    """ONNX export failed or its parity check against PyTorch did not pass."""


class ModelError(SSLInspectError):
    """An ONNX model is not an SSL Inspect model or cannot be run."""


class Cancelled(SSLInspectError):
    """The job was cancelled through its CancelToken; whatever it had saved is kept."""


class ResourceError(SSLInspectError):
    """The job does not fit the machine (GPU out of memory even at a small batch); the message says what to change."""
