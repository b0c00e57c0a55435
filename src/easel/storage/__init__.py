"""Storage: generated images behind signed URLs, and the database: keys, limits, quotas, usage."""
