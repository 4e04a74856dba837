"""Errors of the exports.

ExportError                 base of every error raised while exporting
├── NameCollisionError      two contract types (or two channels) would share one name
├── InvalidNameError        a queue name gives no valid AsyncAPI key
└── DanglingReferenceError  a generated `$ref` points at nothing in the document
"""

from __future__ import annotations

__all__ = ["DanglingReferenceError", "ExportError", "InvalidNameError", "NameCollisionError"]


class ExportError(Exception):
    """Base of the errors raised while exporting the contract documents."""


class NameCollisionError(ExportError):
    """Two different things would be written under one name (a schema or a channel id)."""


class InvalidNameError(ExportError):
    """A queue or actor name that cannot become a key of the AsyncAPI document."""


class DanglingReferenceError(ExportError):
    """A generated `$ref` points at no component of the document."""
