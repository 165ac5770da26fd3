"""Privacy: per-endpoint input policies, erasure of one subject's inputs, retention."""
