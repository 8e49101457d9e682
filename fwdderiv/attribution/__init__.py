"""Attributions (placeholder)."""
