"""Observability: Prometheus metrics and structured JSON logs; imports nothing from the web layer."""
