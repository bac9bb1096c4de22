"""Lambda hooks, one folder each: a thin handler.py over plain, testable logic."""
