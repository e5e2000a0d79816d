"""Operators for AI-DOL conversations and chat images."""
