"""Client-sent images: checked by content and decoded under limits before anything uses them."""
