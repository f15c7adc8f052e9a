"""Putting firmware and model on a board: ``.kfpkg`` packages, the flash plan, serial ports."""
