"""Draftwire: autosave, job queue and realtime gateway, observable end to end."""
