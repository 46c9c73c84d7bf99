"""Ready roles: planner, coder, translator, reviewer, support."""
