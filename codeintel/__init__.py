"""codeintel: code search and cited answers over source repositories."""

__version__ = "0.1.0"

__all__ = ["__version__"]
