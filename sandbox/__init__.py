"""Sandboxes for running model-written code."""
