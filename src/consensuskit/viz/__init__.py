"""Human-facing views of simulation traces (terminal timeline)."""

from consensuskit.viz.timeline import HEARTBEAT_MODES, render_timeline, timeline_rows, timeline_text

__all__ = ["HEARTBEAT_MODES", "render_timeline", "timeline_rows", "timeline_text"]
