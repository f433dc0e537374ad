"""Detection: metric signals, anomaly scoring, the model registry, drift and similar incidents."""
