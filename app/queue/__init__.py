"""The job queue: SAQ's Redis queue and worker with a thin layer of ours for metrics, trace
context, a dead letter, sub-second scheduling and equal-jitter backoff."""

from app.queue.names import AUTOSAVE, BUILD, MAINTENANCE, QUEUES, JobState

__all__ = ("AUTOSAVE", "BUILD", "MAINTENANCE", "QUEUES", "JobState")
