"""``consensuskit view``: serve or export the browser view of a trace or a live cluster.

Rules this module owns:
  * exactly one input: a JSON-lines trace (``TRACE``) or a live cluster
    (``--endpoints``); ``--html`` / ``--shiviz`` export a trace instead of serving it;
  * the live side is imported only when asked for (``consensuskit.view.live``); while it
    is missing, ``--endpoints`` exits 2 with one line;
  * bad input (no such file, a malformed trace, an unknown protocol) is one line and
    exit 2, never a traceback; ``serve_records`` is shared with ``scenario run --view``
    and ``sim --view``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from consensuskit.view.trace_io import TraceError, load_trace

DEFAULT_PORT = 7070


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def serve_records(
    records: Sequence[dict[str, Any]],
    protocol: str | None = None,
    node_ids: Sequence[str] | None = None,
    title: str = "",
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> None:
    """Serve the page on ``records`` until interrupted (prints its URL)."""
    from consensuskit.view.app import make_app
    from consensuskit.view.summaries import view_meta

    meta = view_meta(records, protocol, node_ids, title)
    _serve(make_app(meta, records=records), host, port)


def _serve(app: Any, host: str, port: int) -> None:
    from consensuskit.view import app as view_app

    try:
        view_app.serve(app, host, port)
    except OSError as exc:  # the port is taken, the address is not ours: one line
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def view_command(
    trace: Annotated[
        str | None,
        typer.Argument(metavar="TRACE", help="A JSON-lines trace (sim --trace, scenario run --trace)."),
    ] = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to serve on (0: any free one).")
    ] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    html: Annotated[
        str | None, typer.Option("--html", metavar="FILE", help="Write one self-contained HTML page instead.")
    ] = None,
    shiviz: Annotated[
        str | None,
        typer.Option("--shiviz", metavar="FILE", help="Write the trace in ShiViz's log format instead."),
    ] = None,
    protocol: Annotated[
        str | None, typer.Option(help="The trace's protocol (default: guessed from its messages).")
    ] = None,
    title: Annotated[str, typer.Option(help="The page's title.")] = "",
    endpoints: Annotated[
        str | None, typer.Option(help="Live mode: the cluster's client URLs, comma-separated.")
    ] = None,
    admin_token_file: Annotated[
        str | None, typer.Option(help="Live mode: a file holding the admin token (for the actions).")
    ] = None,
) -> None:
    """See it happen: replay a trace in the browser (or export it), or watch a live cluster."""
    if (trace is None) == (endpoints is None):
        raise _fail("give a TRACE file or --endpoints (live mode), not both or neither")
    if endpoints is not None:
        if html or shiviz:
            raise _fail("--html and --shiviz export a trace, not a live cluster")
        _live(endpoints, admin_token_file, protocol, title, host, port)
        return
    assert trace is not None
    from consensuskit.view.summaries import view_meta

    try:
        records = load_trace(trace)
        meta = view_meta(records, protocol, title=title or Path(trace).name)
    except (TraceError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if html or shiviz:
        from consensuskit.view.export import render_html, shiviz_log

        try:
            if html:
                Path(html).write_text(render_html(meta, records), encoding="utf-8")
                typer.echo(f"wrote {html} ({len(records):,} records)")
            if shiviz:
                Path(shiviz).write_text(shiviz_log(records, meta["nodes"]), encoding="utf-8")
                typer.echo(f"wrote {shiviz} (ShiViz log: paste it into bestchai.bitbucket.io/shiviz)")
        except OSError as exc:
            raise _fail(f"cannot write: {exc}") from None
        return
    from consensuskit.view.app import make_app

    _serve(make_app(meta, records=records), host, port)


def _live(
    endpoints: str, token_file: str | None, protocol: str | None, title: str, host: str, port: int
) -> None:
    try:
        from consensuskit.view.live import make_live_source
    except ImportError:
        raise _fail("live mode is not available in this build (consensuskit.view.live is missing)") from None
    token = None
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _fail(f"cannot read the admin token: {exc}") from None
    try:
        source = make_live_source(endpoints, token)
    except Exception as exc:  # the cluster's refusal is one line, not a traceback
        raise _fail(f"cannot reach the cluster: {exc}", 1) from None
    from consensuskit.view.app import make_app
    from consensuskit.view.summaries import catalog_views

    views = catalog_views()
    name = protocol if protocol in views else getattr(source, "protocol", None)
    meta = {
        "protocol": name or "",
        "nodes": list(source.node_ids),
        "view": views[name].to_json() if name in views else {},
        "title": title or "live cluster",
    }
    _serve(make_app(meta, source=source), host, port)
