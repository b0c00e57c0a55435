"""Observability: Prometheus metrics, structured JSON logs; imports nothing from the web layer."""
