"""
A team plugin that cannot even be imported: the proxy must refuse to start
and say which plugin and why, rather than run without the feature.
"""

raise RuntimeError("team plugin misconfigured: TEAM_TOKEN is not set")
