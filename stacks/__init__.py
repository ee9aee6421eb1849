"""Outpost's deployment units: one Stage per environment, composed of stacks."""
