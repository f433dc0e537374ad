"""Alert ingestion: Alertmanager and signed webhooks, grouped into incidents."""
