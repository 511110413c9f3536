-- publish_event in PL/pgSQL: same signature, same row lock on the head, same gap-free seqs.
-- A LANGUAGE sql function that is not inlined is planned again on every call; PL/pgSQL keeps
-- its statements' plans for the session, so every publish costs Postgres less (pgbench, one
-- client, prepared: 0.14 ms a call against 0.18-0.22 ms; docs/BENCHMARKS.md, fifth session).
CREATE OR REPLACE FUNCTION publish_event(p_channel text, p_type text, p_data jsonb)
    RETURNS TABLE (seq bigint, created_at timestamptz)
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_seq bigint;
BEGIN
    INSERT INTO channel_heads AS h (channel, head_seq) VALUES (p_channel, 1)
    ON CONFLICT (channel) DO UPDATE SET head_seq = h.head_seq + 1
    RETURNING h.head_seq INTO v_seq;
    RETURN QUERY
        INSERT INTO channel_events AS e (channel, seq, type, data)
        VALUES (p_channel, v_seq, p_type, p_data)
        RETURNING e.seq, e.created_at;
END
$$;
