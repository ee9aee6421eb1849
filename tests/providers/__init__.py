"""Fake model providers on loopback, scripted per test (one module per API)."""
