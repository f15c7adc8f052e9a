"""pokedex-k210 host toolkit: build, verify, flash and bench a K210 Pokémon classifier."""

__version__ = "0.1.0"
