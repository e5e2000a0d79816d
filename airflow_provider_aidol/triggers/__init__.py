"""Triggers: the waits a deferrable AI-DOL operator hands to the triggerer."""
