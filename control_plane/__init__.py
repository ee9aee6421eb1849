"""Outpost control plane: the multi-tenant dispatch API and the dispatch engine."""
