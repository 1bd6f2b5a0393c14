"""zkauth: zero-knowledge authentication for APIs, agents and people."""

__version__ = "0.1.0"
