"""Storage: generated images (local disk or S3-compatible) and the database: keys, limits, quotas,
usage."""
