"""Hooks: the signed AI-DOL client."""
