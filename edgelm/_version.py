"""The package version, in a module of its own so that edgelm's modules can name it
without importing the package facade (``edgelm/__init__.py``)."""

__version__ = "0.1.0"
