"""The history as one static HTML page: a graph per series, filters, steps linked to commits.

``graph`` draws one series as inline SVG with matplotlib; ``page`` writes the
page around the graphs (its script and style are inline: it needs no server and
fetches nothing, so it opens from a CI artifact or a file).
"""

from invbench.render.dashboard.page import write_dashboard

__all__ = ["write_dashboard"]
