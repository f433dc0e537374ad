"""Incident analytics: MTTA/MTTR and friends over windows (pandas)."""
