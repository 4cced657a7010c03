"""Every error the product raises on purpose, in one place.

Each message is meant for a person: one line, saying what is wrong and, where it helps, what
to do; none ever holds a key. The web layer maps them to HTTP answers, the CLI to exit codes.
"""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration cannot be used; the message is meant for the person running us."""


class InputError(ValueError):
    """Input a person gave that we cannot use; the message says why, in one line."""


# --- sessions and rounds ----------------------------------------------------------------


class SessionNotFound(LookupError):
    """No session has this id, in memory or in the store."""


class RoundInProgress(RuntimeError):
    """The session runs a round already: wait for it, or stop it."""


class TooManyRounds(RuntimeError):
    """The server runs ``settings.max_running_rounds`` rounds already."""

    def __init__(self, running: int) -> None:
        super().__init__(f"{running} rounds are running, the most this server runs at once")
        self.running = running


class OverBudget(RuntimeError):
    """The session's budget cannot pay for what was asked; the message says how much is
    left and what the next turn could cost."""


# --- the store --------------------------------------------------------------------------


class BusUnavailable(RuntimeError):
    """The shared event bus (Redis) cannot be reached: nothing can be published or read."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"the event bus (Redis) is unavailable: {problem}")


class LeaseLost(BusUnavailable):
    """This worker no longer holds the lease of the session it publishes a round of:
    another worker took it over (this one was cut off or too slow to renew it) and ends
    the round; nothing more of it is published from here."""

    def __init__(self, session_id: str) -> None:
        RuntimeError.__init__(self, f"another worker took over session {session_id}")


class StoreError(Exception):
    """The database cannot be used. The message names the file (or the URL, without its
    password) and the problem, in one line. ``conflict``: a write broke a uniqueness rule."""

    def __init__(self, path: str, problem: str, *, conflict: bool = False) -> None:
        super().__init__(f"database {path}: {problem}")
        self.path = path
        self.problem = problem
        self.conflict = conflict


# --- providers --------------------------------------------------------------------------


class LLMError(Exception):
    """A provider call failed. ``message`` is safe to show a person; it never holds a key."""

    def __init__(self, message: str, *, error_class: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.error_class = error_class
        self.retryable = retryable


class StreamBroken(LLMError):
    """The stream failed after content had arrived; ``partial`` is the text received."""

    def __init__(self, message: str, *, error_class: str, partial: str) -> None:
        super().__init__(message, error_class=error_class)
        self.partial = partial


class ModelUnavailable(LLMError):
    """The model cannot be used at all (unknown, or no key): a setup problem, not a glitch."""
