"""Synthetic demo data in the official schemas (never on the runtime path of real data)."""
