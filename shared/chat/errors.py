"""Errors of the conversation core.

ChatError
└── PoWorkerUnavailableError   the PO worker could not be created or answered nothing
"""

from __future__ import annotations

__all__ = ["ChatError", "PoWorkerUnavailableError"]


class ChatError(Exception):
    """Base of the conversation core's errors."""


class PoWorkerUnavailableError(ChatError):
    """The user's PO worker could not be created, or died and could not be replaced."""
