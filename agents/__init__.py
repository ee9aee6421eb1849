"""Outpost agents: the registry (single source of truth), the in-container runner and images."""
