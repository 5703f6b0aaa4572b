"""LiteMX: self-hostable email infrastructure for role inboxes operated by AI agents."""

__version__ = "0.1.0"
