"""lemo's version, in one place: the package, the environment report and saved predictors read it from here
(a source checkout on PYTHONPATH has no installed metadata to ask)."""

__version__ = "0.1.0"
