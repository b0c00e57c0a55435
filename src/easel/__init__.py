"""Easel: an OpenAI-compatible image generation server running open diffusion models."""

__version__ = "0.1.0"
