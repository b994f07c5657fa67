"""benchbase-example: a benchbase plugin (see README.md; the hooks are in `plugin.py`)."""
