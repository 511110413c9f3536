"""What one Redis call costs the calling process in CPU: redis-py's pooled client against our
:class:`app.redisconn.Pipelined`, the same Lua script, against a throwaway redis-server.

    .venv/bin/python -m loadtests.bench_redis_call [--calls 5000] [--payload 2000]

Each client runs ``--calls`` calls of a one-key script with a ``--payload``-byte argument, one
at a time and then 10 at once; the figure is the process's CPU time (``time.process_time``,
user + system, so the socket syscalls count) per call. Decision 0005 (last addendum) quotes it.
Tracing is off (``OTEL_SDK_DISABLED=true``, as the shared benchmark runs the service) unless the
environment says otherwise: with it on, each pipelined call is a span. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from app.redisconn import Pipelined, Script, redis_client
from devstack.servers import RedisServer

os.environ.setdefault("OTEL_SDK_DISABLED", "true")
LUA = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('STRLEN', KEYS[1])"
CONCURRENCY = (1, 10)


async def _cpu_per_call(call: Callable[[], Awaitable[Any]], calls: int, concurrency: int) -> float:
    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    start = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return round((time.process_time() - start) / calls * 1e6, 1)


async def main(calls: int, payload: int) -> dict[str, Any]:
    arg = b"x" * payload
    with tempfile.TemporaryDirectory(prefix="draftwire-bench-") as root:
        server = RedisServer(Path(root)).start()
        try:
            pooled = redis_client(server.url)
            script = pooled.register_script(LUA)
            pipelined = Pipelined(server.url)
            lua = Script("bench", LUA)
            await script(keys=["k"], args=[arg])  # loaded, connected: warm for both
            await pipelined.run(lua, ["k"], [arg])
            result: dict[str, Any] = {"calls": calls, "payloadBytes": payload, "cpuUsPerCall": {}}
            for n in CONCURRENCY:
                result["cpuUsPerCall"][f"concurrency{n}"] = {
                    "redis-py": await _cpu_per_call(lambda: script(keys=["k"], args=[arg]), calls, n),
                    "pipelined": await _cpu_per_call(lambda: pipelined.run(lua, ["k"], [arg]), calls, n),
                }
            await pipelined.close()
            await pooled.aclose()
            return result
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--payload", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main(args.calls, args.payload)), indent=2))
