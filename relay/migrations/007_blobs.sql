-- Uploaded JPEGs are as durable as events: stored in the same statement as their event, so a 202 means
-- the bytes are on disk (fsync, synchronous commit) in the store every relay shares. Redis keeps a copy
-- only as a cache for the workers. Removed when the event's result lands (after a grace for back-fills
-- of a shrunk review) or the event fails (relay/blobs.py).
CREATE TABLE blobs (
    id text PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    data bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- JPEGs do not compress: store them out of line without TOAST's futile compression attempt.
ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX blobs_event ON blobs (event_id);
ALTER TABLE blobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE blobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON blobs USING (app_tenant_ok(tenant_id)) WITH CHECK (app_tenant_ok(tenant_id));
GRANT SELECT, INSERT, DELETE ON blobs TO insane_app;

DROP FUNCTION accept_event(uuid, uuid, text, timestamptz, text, text, text, text[], text[], integer, integer);

-- As before (one round trip: idempotency, quota, event, moments), and the uploads' bytes with them.
CREATE FUNCTION accept_event(
    p_tenant uuid, p_id uuid, p_camera text, p_at timestamptz, p_hint text, p_idem text, p_lane text,
    p_urls text[], p_blobs text[], p_quota integer, p_deep_min integer, p_data bytea[]
) RETURNS TABLE (event_id uuid, created boolean, used integer, created_at timestamptz, status text, lane text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_used integer;
    v_at timestamptz;
    v_status text;
    v_lane text;
    v_n integer := cardinality(p_urls);
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    INSERT INTO events AS e (id, tenant_id, camera, occurred_at, hint, idem_key, lane, n_moments)
    VALUES (p_id, p_tenant, p_camera, p_at, p_hint, p_idem, p_lane, v_n)
    ON CONFLICT (tenant_id, idem_key) DO NOTHING
    RETURNING e.id, e.created_at INTO v_id, v_at;
    IF v_id IS NULL THEN
        SELECT e.id, e.created_at, e.status, e.lane INTO v_id, v_at, v_status, v_lane
            FROM events e WHERE e.tenant_id = p_tenant AND e.idem_key = p_idem;
        RETURN QUERY SELECT v_id, false, NULL::integer, v_at, v_status, v_lane;
        RETURN;
    END IF;
    IF p_quota IS NOT NULL AND v_n >= p_deep_min THEN
        INSERT INTO usage AS u (tenant_id, day, deep_reviews) VALUES (p_tenant, current_date, 1)
        ON CONFLICT (tenant_id, day) DO UPDATE SET deep_reviews = u.deep_reviews + 1
            WHERE u.deep_reviews < p_quota
        RETURNING u.deep_reviews INTO v_used;
        IF v_used IS NULL OR v_used > p_quota THEN
            RAISE EXCEPTION 'daily quota of % deep reviews is used up', p_quota USING ERRCODE = 'IQ001';
        END IF;
    END IF;
    INSERT INTO moments (event_id, idx, tenant_id, url, blob)
    SELECT p_id, (o.i - 1)::integer, p_tenant, o.u, o.b FROM unnest(p_urls, p_blobs) WITH ORDINALITY AS o(u, b, i);
    IF cardinality(p_data) > 0 THEN
        INSERT INTO blobs (id, tenant_id, event_id, data)
        SELECT b, p_tenant, p_id, d
        FROM unnest(array_remove(p_blobs, NULL), p_data) AS x(b, d);
    END IF;
    RETURN QUERY SELECT v_id, true, v_used, v_at, 'queued'::text, p_lane;
END $$;

GRANT EXECUTE ON FUNCTION accept_event TO insane_app;
