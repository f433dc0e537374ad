"""Incidents: the system of record that every other feature feeds or reads."""
