"""benchbase: a plugin-based benchmark suite for GNNs under distribution shift."""

from benchbase.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
