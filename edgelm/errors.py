"""The package's exception hierarchy.

Every failure a user can cause (a bad path, a corrupt file, an unsupported model,
no disk space) is raised as a subclass of :class:`EdgeLMError`; the CLI prints its
message on one line and exits with status 2. Vendor and subprocess errors are
translated into these types at one place and raised ``from`` the original.
"""

from __future__ import annotations

__all__ = [
    "EdgeLMError",
    "ExportError",
    "SourceError",
    "VerificationError",
    "ManifestError",
    "RuntimeLoadError",
    "SamplingError",
    "ProfileError",
    "DeviceError",
]


class EdgeLMError(Exception):
    """Base class of every error edgelm raises on purpose."""


class SourceError(EdgeLMError):
    """The model source (folder, GGUF file, hub id, preset) cannot be read."""


class ExportError(EdgeLMError):
    """The export pipeline failed (unsupported model, disk full, bad option)."""


class VerificationError(ExportError):
    """The exported model does not agree with the reference closely enough."""


class ManifestError(EdgeLMError):
    """A model folder has no manifest, or one that does not match the schema."""


class RuntimeLoadError(EdgeLMError):
    """A model folder cannot be loaded by the runtime."""


class SamplingError(EdgeLMError, ValueError):
    """Invalid sampling parameters or logits (NaN, all -inf)."""


class ProfileError(EdgeLMError):
    """A device profile is missing, malformed, or lacks a source for a number."""


class DeviceError(EdgeLMError):
    """A phone or board cannot be reached or driven (adb missing, unauthorized, offline)."""
