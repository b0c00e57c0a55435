"""Generated images: one store interface, on local disk or in S3-compatible object storage."""
