"""benchbase: a plugin-based benchmark suite for GNNs under distribution shift."""

from benchbase.identity import pin_cpu_numerics

# Before any tensor operation of the process: the same spec gives the same bits on any x86-64 CPU.
pin_cpu_numerics()

from benchbase.hookspecs import hookimpl  # noqa: E402

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
