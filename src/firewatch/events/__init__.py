"""Live updates: incident timeline entries as Server-Sent Events, fanned out by Redis."""
