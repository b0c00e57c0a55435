"""The HTTP layer: OpenAI-compatible routes, authentication and error envelopes."""
