"""The feature services both HTTP roles build once per process, with the channel owners they
register: who owns ``draft:<id>``, ``job:draft:...`` and ``job:build:<uuid>`` is answered the same
way by the API and by the gateway (a socket's subscribe asks it)."""

from __future__ import annotations

from dataclasses import dataclass

from app import autosave, builds, jobs
from app.autosave.service import AutosaveService
from app.jobs import JobStore
from app.platform import Platform


@dataclass(frozen=True)
class Services:
    drafts: AutosaveService
    jobs: JobStore


def services(platform: Platform) -> Services:
    """Autosave and the job store, their channel owners registered on ``platform.owners``."""
    drafts = autosave.service(platform)
    job_store = jobs.store(platform)
    job_store.register_unrecorded(*autosave.unrecorded_jobs(drafts))
    builds.register_owners(platform, job_store)
    return Services(drafts=drafts, jobs=job_store)
