"""API keys: issuing, storing as digests, and checking the secrets clients present."""
