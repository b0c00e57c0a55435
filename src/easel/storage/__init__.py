"""Storage: generated images on disk behind signed URLs, and the database of API keys."""
