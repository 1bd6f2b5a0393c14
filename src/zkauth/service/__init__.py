"""Async use cases of zkauth over small ports (DESIGN.md "Layout").

``models`` holds the records, ``ports`` the protocols adapters implement, ``clock`` the clocks.
"""
