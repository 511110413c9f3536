"""Autosave: validated, rate-limited saves buffered in Redis, coalesced into batched Postgres writes.

``store`` owns the Redis layout, ``service`` the API-side rules, ``routes`` the HTTP surface and
``flush`` the worker side.
"""
