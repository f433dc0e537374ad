"""Baseline apps measured in the same run as firewatch (see bench/README.md)."""
