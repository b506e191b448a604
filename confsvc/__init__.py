"""confsvc: self-hosted multipoint video briefings for provincial government."""

__version__ = "0.1.0"
