"""Raw HTTP over a socket for the edge and fuzz tests: send any bytes, read every answer
until the server closes, and parse the answers strictly (a malformed answer fails)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; the last of a repeated name
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class MalformedAnswer(AssertionError):
    pass


def request_bytes(
    method: bytes, target: bytes, headers: dict[bytes, bytes] | None = None, body: bytes = b""
) -> bytes:
    """A request with ``Content-Length`` added when there is a body (or a PUT) and none is given."""
    headers = dict(headers or {})
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: test"]
    lines += [k + b": " + v for k, v in headers.items()]
    if not any(k.lower() == b"content-length" for k in headers) and (body or method == b"PUT"):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(
    port: int,
    payload: bytes,
    *,
    head: bool = False,
    complete: bool = True,
    expect: int | None = None,
    timeout: float = 15.0,
) -> list[Answer]:
    """Send ``payload`` and parse the answers, read until the server closes the
    connection or stays silent for a moment after the first answer (keep-alive).  A
    request cut short (``complete=False``) may get no answer: it waits for the rest of
    the request.  ``expect``: stop once that many answers arrived.  (No half-close:
    aiohttp drops a connection at EOF without answering.)"""
    data = b""
    answers: list[Answer] = []
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(min(left, IDLE if answers or not complete else left))
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            more, data = _split_answers(data, head=head and not any(a.status >= 200 for a in answers))
            answers += more
            if expect is not None and len(answers) >= expect and not data:
                break  # as many answers as requests: no need to wait for silence
    if data:
        more, data = _split_answers(data, head=head and not any(a.status >= 200 for a in answers), final=True)
        answers += more
    if data:
        raise MalformedAnswer(f"an answer cut short or malformed: {data[:300]!r}")
    if complete and not answers:
        raise MalformedAnswer(f"no answer to a complete request within {timeout} s: {payload[:200]!r}")
    return answers


IDLE = 0.3  # seconds of silence after an answer that end the reading


def parse_answers(data: bytes, *, head: bool = False) -> list[Answer]:
    answers, rest = _split_answers(data, head=head, final=True)
    if rest:
        raise MalformedAnswer(f"an answer cut short or malformed: {rest[:300]!r}")
    return answers


def _split_answers(data: bytes, *, head: bool = False, final: bool = False) -> tuple[list[Answer], bytes]:
    """The complete answers at the start of ``data``, and the bytes after them
    (``final``: the connection closed, no more bytes will come)."""
    answers = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if not b"HTTP/1.1 ".startswith(data[:9]) and not b"HTTP/1.0 ".startswith(data[:9]):
                raise MalformedAnswer(f"not a status line: {data[:200]!r}")
            break
        lines = data[:end].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0") or not parts[1].isdigit():
            raise MalformedAnswer(f"not a status line: {lines[0][:200]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name.strip():
                raise MalformedAnswer(f"not a header line: {line[:200]!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        if "transfer-encoding" in headers:
            raise MalformedAnswer(f"unexpected Transfer-Encoding: {headers}")
        length_text = headers.get("content-length")
        status = int(parts[1])
        rest = data[end + 4 :]
        closing = headers.get("connection", "").lower() == "close" or parts[0] == b"HTTP/1.0"
        if head and closing and length_text is not None and length_text.isdigit() and (rest or not final):
            # aiohttp's answer to a HEAD its parser refused carries a body (it cannot know
            # the method); the connection closes right after it, so nothing is ambiguous.
            length = int(length_text)
        elif head or status in (204, 304) or 100 <= status < 200:
            length = 0
        elif length_text is None or not length_text.isdigit():
            raise MalformedAnswer(f"an answer without a Content-Length: {data[:300]!r}")
        else:
            length = int(length_text)
        if len(rest) < length:
            break
        answers.append(Answer(status, headers, rest[:length]))
        data = rest[length:]
        if status >= 200:
            head = False  # only the first final answer is the HEAD's
    return answers, data


def check_error_body(answer: Answer) -> dict[str, Any]:
    """An error answer's body is JSON ``{"error": CODE, "message": TEXT, ...}``."""
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    body = answer.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body
