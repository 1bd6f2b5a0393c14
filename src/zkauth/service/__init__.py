"""Async use cases of zkauth over small ports (README.md "Development").

``models`` holds the records, ``ports`` the protocols adapters implement, ``clock`` the clocks.
"""
