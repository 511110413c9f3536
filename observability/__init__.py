"""Logs, traces and metrics: everything observability lives here, beside the app, importing nothing of it."""
