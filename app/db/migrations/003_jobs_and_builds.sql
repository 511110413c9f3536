-- Build jobs: who owns each job (so any API process can answer GET /api/jobs/{id} with 404 for
-- everyone else) and the latest Markdown rendered per draft (issue 3, seeds 000/001).
CREATE TABLE jobs (
    id            text        PRIMARY KEY,
    owner_user_id text        NOT NULL,
    type          text        NOT NULL,
    queue         text        NOT NULL,
    draft_id      uuid,
    -- Last state the handler recorded; Redis (SAQ) has the live one. Kept for when Redis forgot.
    status        text        NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'active', 'retrying', 'completed', 'failed')),
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- The maintenance job deletes finished records by age.
CREATE INDEX jobs_finished ON jobs (updated_at) WHERE status IN ('completed', 'failed');

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY jobs_owner ON jobs
    USING (owner_user_id = current_setting('app.current_user_id', true))
    WITH CHECK (owner_user_id = current_setting('app.current_user_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO draftwire_app;

CREATE TABLE draft_builds (
    draft_id      uuid        PRIMARY KEY,
    owner_user_id text        NOT NULL,
    job_id        text        NOT NULL,
    version       bigint      NOT NULL,
    markdown      text        NOT NULL,
    built_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE draft_builds ENABLE ROW LEVEL SECURITY;
ALTER TABLE draft_builds FORCE ROW LEVEL SECURITY;
CREATE POLICY draft_builds_owner ON draft_builds
    USING (owner_user_id = current_setting('app.current_user_id', true))
    WITH CHECK (owner_user_id = current_setting('app.current_user_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON draft_builds TO draftwire_app;

-- Who owns a job, for the realtime gateway's "may this user follow job:<id>"; answers only the
-- owner id. SECURITY DEFINER so it sees past RLS; search_path pinned (as draft_owner).
CREATE FUNCTION job_owner(p_job_id text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT owner_user_id FROM jobs WHERE id = p_job_id $$;
REVOKE ALL ON FUNCTION job_owner(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_owner(text) TO draftwire_app;

-- The maintenance job's one cross-user delete: finished job records older than the cutoff.
CREATE FUNCTION purge_finished_jobs(p_before timestamptz) RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM jobs WHERE status IN ('completed', 'failed') AND updated_at < p_before RETURNING 1
    )
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION purge_finished_jobs(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_finished_jobs(timestamptz) TO draftwire_app;
