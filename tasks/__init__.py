"""Conversation trees, messages, the task queue and reviews."""
