"""The browser view: a replay of a simulator trace or a live cluster, served as one page."""
