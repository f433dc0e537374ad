"""Durable notifications: an outbox in PostgreSQL, delivered at least once by the worker."""
