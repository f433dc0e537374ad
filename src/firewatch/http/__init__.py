"""HTTP conventions shared by every feature's api module."""
