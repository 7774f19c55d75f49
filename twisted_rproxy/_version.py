"""The single place the version number lives."""
__version__ = "0.1.0"
