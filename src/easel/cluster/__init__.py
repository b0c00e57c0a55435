"""Easel on Ray Serve: an ingress deployment serving the API, one model deployment per catalog model."""
