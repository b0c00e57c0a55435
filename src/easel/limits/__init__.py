"""Per-key policy: request and image rates, image quotas, allowed models, expiry; checked before
work is queued."""
