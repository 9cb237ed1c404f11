"""``consensuskit fenced-store``: a tiny resource that lock holders write to, which accepts
a write only with a fencing token at least the highest it has seen (Kleppmann, "How to do
distributed locking"; Chubby's sequencers).

A lock from the etcd service is a lease: a holder paused past its lease (a GC pause, a
SIGSTOP) still believes it holds the lock when it wakes, while another client has taken
it.  Jepsen's etcd 3.4.3 report: such locks "did not, and can not, guarantee mutual
exclusion".  The resource must therefore check: the lock key's create revision (the
token a Lock answers) grows with each holder, and the store refuses a write whose token
is below one it already accepted.

Rules this module owns:
  * ``GET /value`` answers ``{"value": V, "token": HIGHEST}``;
  * ``PUT /value`` with ``{"value": V, "token": T}`` stores V when T >= HIGHEST (then
    HIGHEST = T) and answers 200; a lower T is 409 ``stale-token`` and changes nothing;
    a body without a token is 400.  ``--no-fencing`` makes a store that trusts its
    clients: it accepts every write, token or not (the setup that loses updates);
  * V is any JSON value; the store holds it in memory only (an example, not a database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aiohttp import web


class FencedStore:
    def __init__(self, *, fencing: bool = True) -> None:
        self.fencing = fencing
        self.value: Any = None
        self.highest = 0
        self.accepted = 0
        self.refused = 0

    def write(self, value: Any, token: int | None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of a write (see the module rules)."""
        if not self.fencing:
            pass  # trusts every client, token or not
        elif token is None:
            return 400, {"error": "token-required", "message": "a write needs a fencing token"}
        elif token < self.highest:
            self.refused += 1
            return 409, {
                "error": "stale-token",
                "message": f"token {token} is below {self.highest}, already accepted: the lock was lost",
                "highest": self.highest,
            }
        else:
            self.highest = token
        self.value = value
        self.accepted += 1
        return 200, {"token": self.highest}

    def app(self) -> web.Application:
        from aiohttp import web  # here: the CLI imports this module at start

        app = web.Application()

        async def get(request: web.Request) -> web.Response:
            return web.json_response({"value": self.value, "token": self.highest})

        async def put(request: web.Request) -> web.Response:
            try:
                body = json.loads(await request.read())
            except ValueError:
                return web.json_response({"error": "bad-request", "message": "body must be JSON"}, status=400)
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(body, dict) or "value" not in body or not (token is None or type(token) is int):
                return web.json_response(
                    {"error": "bad-request", "message": 'expected {"value": V, "token": INTEGER}'}, status=400
                )
            status, answer = self.write(body["value"], token)
            return web.json_response(answer, status=status)

        async def stats(request: web.Request) -> web.Response:
            return web.json_response(
                {
                    "fencing": self.fencing,
                    "accepted": self.accepted,
                    "refused": self.refused,
                    "token": self.highest,
                }
            )

        app.router.add_get("/value", get)
        app.router.add_put("/value", put)
        app.router.add_get("/stats", stats)
        return app


async def serve(host: str, port: int, *, fencing: bool = True, ready: Any = None) -> None:
    from aiohttp import web

    runner = web.AppRunner(FencedStore(fencing=fencing).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    if ready is not None:
        ready(port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def fenced_store_command(
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP port (0: any free one).")] = 7200,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    fencing: Annotated[
        bool, typer.Option("--fencing/--no-fencing", help="Refuse tokens below the highest seen.")
    ] = True,
) -> None:
    """A store for lock holders that refuses stale fencing tokens (GET/PUT /value)."""
    no_fencing = not fencing
    mode = "WITHOUT fencing (any write accepted)" if no_fencing else "with fencing"

    def ready(bound: int) -> None:  # printed once the port listens: a script may wait for it
        print(f"fenced-store on http://{host}:{bound} {mode}", flush=True)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(host, port, fencing=not no_fencing, ready=ready))
    except OSError as exc:  # the port is taken, the address is not this host's
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _port(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """``python -m consensuskit.services.fenced_store [--port P] [--no-fencing]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="fenced-store", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=_port, default=7200)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-fencing", action="store_true", help="accept writes without a token")
    args = parser.parse_args(argv)
    fenced_store_command(args.port, args.host, not args.no_fencing)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
