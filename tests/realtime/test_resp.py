"""``app.realtime.resp`` (the gateway's own pub/sub client) against real redis-servers that ask for
a password, an ACL user, a unix socket and TLS: each connection subscribes, gets Redis's
confirmation and receives a message published by redis-py, or fails with an error that says
what is wrong."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from app.realtime.hub import RedisHub
from app.realtime.resp import PubSubConnection
from devstack.servers import RedisServer

pytestmark = pytest.mark.live

PASSWORD = f"pw-{uuid.uuid4().hex}"
WAIT_S = 10.0


@pytest.fixture
def server_dir(workdir: Path) -> Path:
    """A short path (a unix socket path must stay under 108 bytes)."""
    path = workdir / f"r-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path


def started(server: RedisServer) -> Iterator[RedisServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def secured(server_dir: Path) -> Iterator[RedisServer]:
    """A Redis with ``requirepass``, also listening on a unix socket."""
    yield from started(RedisServer(server_dir, password=PASSWORD, unix_socket=server_dir / "redis.sock"))


@pytest.fixture
def certificate(server_dir: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl not found: run scripts/system-deps.sh (apt-get install openssl)")
    cert, key = server_dir / "cert.pem", server_dir / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_server(server_dir: Path, certificate: tuple[Path, Path]) -> Iterator[RedisServer]:
    """A Redis speaking TLS only, with ``requirepass``."""
    yield from started(RedisServer(server_dir, password=PASSWORD, tls=certificate))


@pytest.fixture
async def opened() -> AsyncIterator[list[PubSubConnection]]:
    """Connections a test opened, closed at its end."""
    conns: list[PubSubConnection] = []
    yield conns
    for conn in conns:
        conn.close()


async def roundtrip(conn: PubSubConnection, publisher: Redis) -> None:
    """Subscribe, wait for Redis's confirmation, publish through redis-py, receive the message."""
    channel = f"dw:events:job:{uuid.uuid4().hex}"
    conn.subscribe(channel)
    async with asyncio.timeout(WAIT_S):
        assert await conn.read_one() == [b"subscribe", channel.encode(), 1]
    assert await publisher.publish(channel, b"hello") == 1
    async with asyncio.timeout(WAIT_S):
        assert await conn.read_one() == [b"message", channel.encode(), b"hello"]


async def open_conn(opened: list[PubSubConnection], url: str) -> PubSubConnection:
    conn = await PubSubConnection.open(url)
    opened.append(conn)
    return conn


async def test_password_auth(secured: RedisServer, opened: list[PubSubConnection]) -> None:
    """With the password in the URL (``redis://:pw@host``) AUTH succeeds and pub/sub works."""
    publisher = Redis.from_url(secured.url)
    try:
        await roundtrip(await open_conn(opened, secured.url), publisher)
    finally:
        await publisher.aclose()


async def test_acl_user_auth(secured: RedisServer, opened: list[PubSubConnection]) -> None:
    """An ACL user allowed only what the gateway does (SUBSCRIBE, UNSUBSCRIBE, PING on
    ``dw:events:*``) authenticates as ``redis://user:pw@host`` and receives announcements."""
    publisher = Redis.from_url(secured.url)
    try:
        user_pw = f"gw-{uuid.uuid4().hex}"
        await publisher.execute_command("ACL", "SETUSER", "gateway", "on", f">{user_pw}", "resetchannels",
                                        "&dw:events:*", "-@all", "+subscribe", "+unsubscribe", "+ping")
        url = f"redis://gateway:{user_pw}@127.0.0.1:{secured.port}/0"
        await roundtrip(await open_conn(opened, url), publisher)
    finally:
        await publisher.aclose()


async def test_wrong_password_is_a_clear_error(secured: RedisServer) -> None:
    """A wrong password fails at connect with a ConnectionError naming the refusal and what to
    check, and never repeating the password."""
    wrong = "not-the-password"
    with pytest.raises(ConnectionError) as err:
        await PubSubConnection.open(f"redis://:{wrong}@127.0.0.1:{secured.port}/0")
    message = str(err.value)
    assert "AUTH refused" in message and "WRONGPASS" in message and "REDIS_URL" in message
    assert wrong not in message and PASSWORD not in message


async def test_wrong_acl_user_is_a_clear_error(secured: RedisServer) -> None:
    """An unknown ACL user fails the same way (Redis does not say which half was wrong)."""
    with pytest.raises(ConnectionError, match=r"AUTH refused.*WRONGPASS"):
        await PubSubConnection.open(f"redis://nobody:{PASSWORD}@127.0.0.1:{secured.port}/0")


async def test_missing_password_is_a_clear_error(secured: RedisServer) -> None:
    """No password in the URL of a server that wants one: refused at connect (NOAUTH), instead of
    a connection whose SUBSCRIBEs are silently answered with errors."""
    with pytest.raises(ConnectionError, match=r"NOAUTH.*REDIS_URL needs the password"):
        await PubSubConnection.open(f"redis://127.0.0.1:{secured.port}/0")


async def test_unix_socket(secured: RedisServer, opened: list[PubSubConnection]) -> None:
    """``unix://:pw@/path/to/redis.sock``: connects over the socket, authenticates, receives."""
    assert secured.unix_socket is not None
    publisher = Redis.from_url(secured.url)
    try:
        url = f"unix://:{PASSWORD}@{secured.unix_socket}"
        await roundtrip(await open_conn(opened, url), publisher)
        info = await publisher.client_list()
        paths = {c.get("laddr", "") for c in info} | {c.get("addr", "") for c in info}
        assert any(str(secured.unix_socket) in p for p in paths), f"no client on the socket: {info}"
    finally:
        await publisher.aclose()


async def test_unix_socket_wrong_password(secured: RedisServer) -> None:
    """The unix-socket branch authenticates too: a wrong password is refused there as well."""
    with pytest.raises(ConnectionError, match="AUTH refused"):
        await PubSubConnection.open(f"unix://:wrong@{secured.unix_socket}")


async def test_tls(tls_server: RedisServer, certificate: tuple[Path, Path], opened: list[PubSubConnection],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``rediss://``: TLS with the server's certificate verified (here trusted through
    ``SSL_CERT_FILE``, as an operator with a private CA would), AUTH, then pub/sub. The same URL
    and variable serve redis-py (the publisher here), so one REDIS_URL fits every client."""
    cert, _ = certificate
    assert tls_server.url.startswith("rediss://")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    publisher = Redis.from_url(tls_server.url)
    try:
        await roundtrip(await open_conn(opened, tls_server.url), publisher)
    finally:
        await publisher.aclose()


async def test_tls_untrusted_certificate_refused(tls_server: RedisServer, server_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A certificate nobody vouched for is refused (verification is on, not skipped)."""
    empty = server_dir / "no-ca.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(server_dir / "no-such-dir"))
    with pytest.raises(ssl.SSLCertVerificationError):
        await PubSubConnection.open(tls_server.url)


async def test_plain_client_to_tls_port_fails(tls_server: RedisServer) -> None:
    """``redis://`` to a TLS-only port does not hang: it fails within the connect timeout."""
    with pytest.raises((ConnectionError, TimeoutError)):
        await PubSubConnection.open(f"redis://:{PASSWORD}@127.0.0.1:{tls_server.port}/0")


async def test_gateway_subscriber_logs_why_it_cannot_connect(secured: RedisServer) -> None:
    """The gateway's supervised subscriber (``RedisHub``) with a wrong password keeps retrying, and
    its ``redis_reconnecting`` warning carries the refusal's text (what to fix), not the password."""
    wrong = "not-the-password"
    hub = RedisHub(f"redis://:{wrong}@127.0.0.1:{secured.port}/0", on_messages=lambda *_: None,
                   on_resync=lambda _: None)
    with capture_logs() as logs:
        hub.start()
        try:
            async with asyncio.timeout(WAIT_S):
                while not any(e["event"] == "redis_reconnecting" for e in logs):  # noqa: ASYNC110 - bounded
                    await asyncio.sleep(0.02)
        finally:
            await hub.stop()
    line = next(e for e in logs if e["event"] == "redis_reconnecting")
    assert line["error"] == "Refused" and "WRONGPASS" in line["detail"] and "REDIS_URL" in line["detail"]
    assert wrong not in str(logs) and not hub.connected


async def test_a_silent_redis_is_dropped_and_reconnected(server_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis that stops answering (frozen with SIGSTOP: the socket stays open, nothing comes back,
    not even the PONGs) is given up after the silence limit; once it answers again the hub is back,
    and its channels are told to backfill (announcements made meanwhile may be lost)."""
    import signal

    from app.realtime import hub as hub_module

    monkeypatch.setattr(hub_module, "PING_EVERY_S", 0.1)
    monkeypatch.setattr(hub_module, "SILENCE_LIMIT_S", 0.5)
    monkeypatch.setattr(hub_module, "BACKOFF_S", (0.2,))
    resynced: list[str] = []
    for server in started(RedisServer(server_dir)):
        hub = RedisHub(server.url, on_messages=lambda *_: None, on_resync=resynced.append)
        with capture_logs() as logs:
            hub.start()
            try:
                async with asyncio.timeout(WAIT_S):
                    await hub.acquire("job:silence")
                    assert server.proc is not None
                    server.proc.send_signal(signal.SIGSTOP)
                    try:
                        while not any(e["event"] == "redis_subscriber_silent" for e in logs):  # noqa: ASYNC110
                            await asyncio.sleep(0.02)
                    finally:
                        server.proc.send_signal(signal.SIGCONT)
                    while resynced != ["job:silence"]:  # noqa: ASYNC110 - bounded by the timeout above
                        await asyncio.sleep(0.02)
            finally:
                await hub.stop()
        assert any(e["event"] == "redis_subscriber_lost" for e in logs)


async def test_a_channel_lingers_subscribed_after_its_last_subscriber(server_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The last subscriber leaving keeps the channel subscribed on Redis for LINGER_S: a client
    that comes back meanwhile is confirmed at once (no SUBSCRIBE round trip, nothing missed); after
    it, the channel is unsubscribed."""
    from app.realtime import hub as hub_module

    monkeypatch.setattr(hub_module, "LINGER_S", 0.3)
    received: list[bytes] = []
    for server in started(RedisServer(server_dir)):
        hub = RedisHub(server.url, on_messages=lambda ms: received.extend(p for _, p in ms),
                       on_resync=lambda _: None)
        redis = Redis.from_url(server.url)
        channel = "dw:events:job:linger"

        async def subscribers(redis: Redis = redis, channel: str = channel) -> int:
            return int(dict(await redis.pubsub_numsub(channel))[channel.encode()])

        hub.start()
        try:
            async with asyncio.timeout(WAIT_S):
                await hub.acquire("job:linger")
                hub.release("job:linger")
                assert await subscribers() == 1, "still subscribed right after the last subscriber left"
                await hub.acquire("job:linger")
                assert "job:linger" in hub._confirmed, "back within the linger: confirmed at once"
                await redis.publish(channel, b"after-return")
                while not received:  # noqa: ASYNC110 - bounded by the timeout above
                    await asyncio.sleep(0.01)
                assert received == [b"after-return"]
                hub.release("job:linger")
                while await subscribers():  # noqa: ASYNC110 - bounded by the timeout above
                    await asyncio.sleep(0.05)
                assert "job:linger" not in hub._confirmed
        finally:
            await hub.stop()
            await redis.aclose()


async def test_a_channel_released_before_its_confirmation_is_not_unsubscribed_under_a_new_subscriber(
        server_dir: Path) -> None:
    """The last subscriber leaving while the SUBSCRIBE is still unanswered does not send an
    UNSUBSCRIBE that could land after a returning subscriber's confirmation: the channel lingers,
    the returning subscriber waits for the one confirmation, and announcements reach it."""
    received: list[bytes] = []
    for server in started(RedisServer(server_dir)):
        hub = RedisHub(server.url, on_messages=lambda ms: received.extend(p for _, p in ms),
                       on_resync=lambda _: None)
        redis = Redis.from_url(server.url)
        hub.start()
        try:
            async with asyncio.timeout(WAIT_S):
                while not hub.connected:  # noqa: ASYNC110 - bounded by the timeout above
                    await asyncio.sleep(0.01)
                first = asyncio.create_task(hub.acquire("job:early"))
                await asyncio.sleep(0)  # the SUBSCRIBE is on its way, unanswered
                hub.release("job:early")
                await hub.acquire("job:early")
                await first
                assert dict(await redis.pubsub_numsub("dw:events:job:early"))[b"dw:events:job:early"] == 1
                await redis.publish("dw:events:job:early", b"for-the-returning-subscriber")
                while not received:  # noqa: ASYNC110 - bounded by the timeout above
                    await asyncio.sleep(0.01)
        finally:
            await hub.stop()
            await redis.aclose()
