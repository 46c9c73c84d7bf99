"""Named, built-in workflows."""
