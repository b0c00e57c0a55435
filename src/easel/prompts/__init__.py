"""What happens to a prompt before the pipeline reads it: language detection, the rewriter that
translates or expands it, and the rules for when each applies."""
