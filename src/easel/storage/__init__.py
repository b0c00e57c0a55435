"""Storage: generated images (local disk or S3-compatible) and the database of API keys."""
