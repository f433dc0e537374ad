"""firewatch: a self-hosted incident tracker for ML and data platform teams."""

__version__ = "0.1.0"
