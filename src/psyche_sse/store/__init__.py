"""Persistence: sessions, rounds and turns in SQLite, saved as they stream.

:class:`Store` is the database; :class:`Recorder` folds a session's events into it; the
records are what readers get back.
"""

from .database import Store, StoreError
from .recorder import Recorder
from .records import (
    INTERRUPTED,
    RUNNING,
    Reply,
    RoundRecord,
    SessionHistory,
    SessionSummary,
    Transcript,
    TurnRecord,
)

__all__ = (
    "INTERRUPTED",
    "RUNNING",
    "Recorder",
    "Reply",
    "RoundRecord",
    "SessionHistory",
    "SessionSummary",
    "Store",
    "StoreError",
    "Transcript",
    "TurnRecord",
)
