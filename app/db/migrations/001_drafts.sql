-- Drafts, the application role and row-level security (seeds 000 and 003).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'draftwire_app') THEN
        CREATE ROLE draftwire_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
END
$$;
-- The schema owner switches to the application role per connection (SET ROLE needs membership).
GRANT draftwire_app TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO draftwire_app;
-- /readyz compares applied migrations with the shipped ones as the application role.
GRANT SELECT ON schema_migrations TO draftwire_app;

CREATE TABLE spec_drafts (
    id            uuid PRIMARY KEY,
    owner_user_id text        NOT NULL,
    title         text        NOT NULL,
    payload       jsonb       NOT NULL,
    version       bigint      NOT NULL CHECK (version > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- "Own drafts, newest first" with a keyset cursor.
CREATE INDEX spec_drafts_owner_recent ON spec_drafts (owner_user_id, updated_at DESC, id DESC);

ALTER TABLE spec_drafts ENABLE ROW LEVEL SECURITY;
ALTER TABLE spec_drafts FORCE ROW LEVEL SECURITY;
CREATE POLICY spec_drafts_owner ON spec_drafts
    USING (owner_user_id = current_setting('app.current_user_id', true))
    WITH CHECK (owner_user_id = current_setting('app.current_user_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON spec_drafts TO draftwire_app;

-- Who owns a draft id, for the API's 404-versus-409 decision before a save; answers only the
-- owner id, never content. SECURITY DEFINER so it sees past RLS; search_path pinned.
CREATE FUNCTION draft_owner(draft_id uuid) RETURNS TABLE (owner_user_id text, version bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT owner_user_id, version FROM spec_drafts WHERE id = draft_id $$;
REVOKE ALL ON FUNCTION draft_owner(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION draft_owner(uuid) TO draftwire_app;
