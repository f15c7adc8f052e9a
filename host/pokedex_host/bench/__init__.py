"""The serial bench harness (issue "flash and bench"): the wire protocol, host side."""
