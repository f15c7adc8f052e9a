"""Host version of MaixPy's ``Maix`` module (GPIO only)."""

from maix import GPIO  # noqa: F401  same minimal pin object
