"""Process roles as compositions: each module lists the feature parts its process serves.

- :mod:`.api`: the HTTP API (and, by default, the realtime streams) under Granian;
- :mod:`.worker`: the queue consumers, cron jobs and background services.
"""
