"""Operators for AI-DOL conversations."""
