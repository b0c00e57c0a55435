"""Per-key policy: request and image rates, image quotas, allowed models, expiry.

Checked before work is queued.
"""
