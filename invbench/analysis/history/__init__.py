"""Performance history over commits: a store of runs, series per row and machine, change points.

Modules, lowest first: ``machine`` (the identity that keys a series), ``store``
(SQLite: runs, rows, samples), ``series`` (a row over commits), ``changepoints``
(steps, with ruptures), ``baseline`` (a base's between-run spread, for compare)
and ``backfill`` (older commits run in worktrees).
"""
