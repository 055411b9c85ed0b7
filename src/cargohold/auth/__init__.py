"""Principals, passwords and API keys, token issuing and checking, permissions."""
