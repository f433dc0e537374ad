"""Logs, traces and metrics about firewatch itself."""
