"""Connections to the two servers firewatch depends on, and their embedded stand-ins."""
