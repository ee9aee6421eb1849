"""Operators' tools that run against a deployed stage from a checkout (docs/measuring.md)."""
