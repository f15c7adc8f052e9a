"""Host version of MaixPy's ``Maix`` module (GPIO and utils)."""

import _maix_utils as utils  # noqa: E402,F401  (Maix.utils)
from _gpio import GPIO  # noqa: F401  same minimal pin object as maix.GPIO
