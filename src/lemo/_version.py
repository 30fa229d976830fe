"""lemo's version, in one place: pyproject.toml reads it (``dynamic = ["version"]``), and the package, the
environment report and saved predictors import it from here (a source checkout on PYTHONPATH has no installed
metadata to ask)."""

__version__ = "0.1.0"
