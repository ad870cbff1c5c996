"""make bench, run as a smoke test."""
