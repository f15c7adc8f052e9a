"""The one error type for user-facing failures.

Every stage raises :class:`PokedexError` with a message that names the file or value at fault
and a hint that says what to change. The CLI prints both and exits non-zero; tracebacks are
shown only with ``--debug``.
"""

from __future__ import annotations


class PokedexError(Exception):
    """A failure the user can act on."""

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class BudgetExceeded(PokedexError):
    """The compiled model does not fit the board/budget (exit code 3)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, exit_code=3)


class VerificationFailed(PokedexError):
    """The quantised model lost more accuracy than ``--max-loss`` allows (exit code 4)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, exit_code=4)
