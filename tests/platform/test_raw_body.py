"""``app.http.raw.read_body``: reading stops at ``Content-Length`` (one ``receive()`` less a
request under Granian), chunked bodies are read to their end message, limits and disconnects
answer 4xx; and through the real Granian API a keep-alive connection stays usable after bodies
that came whole, split across segments, or chunked."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from app.errors import ApiError
from app.http.raw import read_body
from loadtests.rawhttp import Connection, post_json
from tests.support.processes import ServiceProcess


class Script:
    """An ASGI ``receive`` that plays back messages and counts the calls."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self.messages = list(messages)
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if not self.messages:
            raise AssertionError("read_body asked for a message after the body's end")
        return self.messages.pop(0)


def scope(length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "headers": headers}


def body(chunk: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": chunk, "more_body": more}


async def test_a_whole_body_is_one_receive_when_its_length_is_known() -> None:
    """Granian's way: the data with more_body True, then an empty end message that is not awaited."""
    receive = Script(body(b'{"a":1}', True), body(b"", False))
    assert await read_body(scope(7), receive, 100) == b'{"a":1}'
    assert receive.calls == 1


async def test_a_body_split_across_messages_is_read_to_its_length() -> None:
    receive = Script(body(b'{"a"', True), body(b":1}", True), body(b"", False))
    assert await read_body(scope(7), receive, 100) == b'{"a":1}'
    assert receive.calls == 2


async def test_without_a_length_the_body_is_read_to_its_end_message() -> None:
    receive = Script(body(b'{"a"', True), body(b":1}", True), body(b"", False))
    assert await read_body(scope(None), receive, 100) == b'{"a":1}'
    assert receive.calls == 3


async def test_an_empty_body_needs_no_receive() -> None:
    receive = Script()
    assert await read_body(scope(0), receive, 100) == b""
    assert receive.calls == 0


@pytest.mark.parametrize(
    ("length", "messages"),
    [(500, []), (None, [body(b"x" * 60, True), body(b"x" * 60, True)])],
    ids=["declared-over-limit", "chunked-over-limit"],
)
async def test_over_the_limit_is_413(length: int | None, messages: list[dict[str, Any]]) -> None:
    with pytest.raises(ApiError) as refused:
        await read_body(scope(length), Script(*messages), 100)
    assert refused.value.status == 413


async def test_a_client_gone_before_its_body_is_400() -> None:
    with pytest.raises(ApiError) as refused:
        await read_body(scope(7), Script(body(b'{"a"', True), {"type": "http.disconnect"}), 100)
    assert refused.value.status == 400


@pytest.mark.live
async def test_keep_alive_survives_whole_split_and_chunked_bodies(api: ServiceProcess, token: Callable[..., str]) -> None:
    """Four saves of one draft on one connection: each answered 202 in order (versions 1-4), so
    stopping at Content-Length neither loses bytes nor leaves Granian unable to reuse the socket."""
    draft = str(uuid.uuid4())
    headers = {"authorization": f"Bearer {token()}"}
    # 300 KB: more than one socket read, so the server gets the body in several chunks.
    payload = json.dumps({"draftId": draft, "title": "t", "payload": {"p": "x" * 300_000}}).encode()
    half = len(payload) // 2
    whole = post_json("/api/autosave", payload, headers)
    head = whole[: len(whole) - len(payload)]
    chunked_head = head.replace(b"Content-Length: %d\r\n" % len(payload), b"Transfer-Encoding: chunked\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:half], payload[half:]))
    conn = await Connection("127.0.0.1", api.port).open()  # an EOF mid-response raises: the socket was not reused
    try:
        async with asyncio.timeout(10):
            versions = [await conn.request(whole)]  # whole, in one write
            assert conn.writer is not None
            conn.writer.write(head + payload[:half])  # split: the head and half the body, then the rest
            versions.append(await conn.request(payload[half:]))
            versions.append(await conn.request(chunked_head + chunks + b"0\r\n\r\n"))  # read to the end message
            versions.append(await conn.request(whole))  # and the connection still serves the next request
    finally:
        conn.close()
    answers = [(status, json.loads(body)) for status, body in versions]
    assert [status for status, _ in answers] == [202, 202, 202, 202], answers
    assert [answer["version"] for _, answer in answers] == [1, 2, 3, 4]
    assert {answer["draftId"] for _, answer in answers} == {draft}
