"""Realtime: events stored in Postgres (``channel_events``), announced on Redis, delivered over
WebSocket and SSE with catch-up replay."""
