"""Easel on Ray Serve: an ingress deployment for the API, one model deployment per catalog model."""
