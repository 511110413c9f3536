"""``draftwire queue stats|retry|purge-failed`` (and other operator commands of the queue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the queue's subcommands to the ``draftwire`` parser."""
