"""Analysis over stored results: comparisons, A/B runs and the history over commits."""
