"""Helpers shared by the autosave tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def save_body(title: str = "A draft", payload: Any = None, **extra: Any) -> dict[str, Any]:
    return {"title": title, "payload": {"intro": "hello"} if payload is None else payload, **extra}


async def eventually(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], timeout: float = 20, every: float = 0.05
) -> T:
    """Poll ``probe`` until ``until(result)``; fail with the last result after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    result = await probe()
    while not until(result):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {result!r}")
        await asyncio.sleep(every)
        result = await probe()
    return result


def client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10)
