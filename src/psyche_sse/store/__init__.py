"""Persistence: sessions, rounds and turns in SQLite or PostgreSQL, saved as they stream.

:class:`Store` is the database and its read API; :class:`Recorder` folds a session's events
into it, and answers the reads that must agree with the live streams.
"""

from ..errors import StoreError
from .database import Store
from .recorder import Recorder
from .records import CouncilMemory, Remembered, SessionSummary

__all__ = (
    "CouncilMemory",
    "Recorder",
    "Remembered",
    "SessionSummary",
    "Store",
    "StoreError",
)
