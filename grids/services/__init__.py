"""Writes on territory (grids, teams, redraws) with their business rules. Pure functions with
keyword arguments; ``by`` is the acting user. See territory.py, redraw.py, team.py, ownership.py,
coverage.py."""
