-- Realtime events: Postgres is the source of truth, Redis only announces (seed 002).
CREATE TABLE channel_heads (
    channel  text PRIMARY KEY,
    head_seq bigint NOT NULL
);
CREATE TABLE channel_events (
    channel    text        NOT NULL,
    seq        bigint      NOT NULL,
    type       text        NOT NULL,
    data       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (channel, seq)
);
-- Retention deletes by age.
CREATE INDEX channel_events_created ON channel_events (created_at);

-- Append one event with the next seq of its channel. The head row's lock serialises
-- publishers of one channel until commit, so seqs are gap-free and unique even under
-- concurrent publishers; a rolled-back publish releases its seq with the rollback.
CREATE FUNCTION publish_event(p_channel text, p_type text, p_data jsonb)
    RETURNS TABLE (seq bigint, created_at timestamptz)
    LANGUAGE sql VOLATILE
AS $$
    WITH head AS (
        INSERT INTO channel_heads AS h (channel, head_seq) VALUES (p_channel, 1)
        ON CONFLICT (channel) DO UPDATE SET head_seq = h.head_seq + 1
        RETURNING h.head_seq
    )
    INSERT INTO channel_events (channel, seq, type, data)
    SELECT p_channel, head.head_seq, p_type, p_data FROM head
    RETURNING channel_events.seq, channel_events.created_at
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON channel_heads, channel_events TO draftwire_app;
GRANT EXECUTE ON FUNCTION publish_event(text, text, jsonb) TO draftwire_app;
