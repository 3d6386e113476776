"""Models: added with the task queue."""
