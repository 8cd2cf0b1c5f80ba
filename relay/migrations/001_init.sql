-- Tenants, keys, tiers, events, moments, results, workers, usage; row-level security on every
-- table with a tenant column. The relay connects as insane_app (not the owner), and FORCE makes
-- the policies bind the owner too. A transaction sets app.tenant_id to one tenant's id, or to '*'
-- for the relay's own cross-tenant work (key lookup, worker API, reconciler).

DO $$
BEGIN
    CREATE ROLE insane_app LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE FUNCTION app_tenant_ok(t uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT current_setting('app.tenant_id', true) = '*' OR t::text = current_setting('app.tenant_id', true)
$$;

CREATE TABLE tiers (
    name text PRIMARY KEY,
    lane text NOT NULL CHECK (lane IN ('pro', 'standard')),
    daily_deep_reviews integer CHECK (daily_deep_reviews >= 0),    -- NULL: no daily quota
    deep_min_moments integer NOT NULL DEFAULT 20 CHECK (deep_min_moments >= 1),
    rate_per_s double precision CHECK (rate_per_s > 0),            -- NULL: no token bucket
    burst integer NOT NULL DEFAULT 1 CHECK (burst >= 1),
    max_k integer NOT NULL CHECK (max_k >= 1)
);
INSERT INTO tiers (name, lane, daily_deep_reviews, deep_min_moments, rate_per_s, burst, max_k) VALUES
    ('guardian', 'standard', 5, 20, NULL, 1, 20),
    ('pro', 'pro', NULL, 20, 5.0, 20, 40);

CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    tier text NOT NULL REFERENCES tiers (name),
    allow_private_hosts text[] NOT NULL DEFAULT '{}',
    webhook_url text,
    webhook_secret text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id text PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    secret_sha256 bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE events (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    camera text NOT NULL,
    occurred_at timestamptz NOT NULL,
    hint text,
    idem_key text,
    lane text NOT NULL,
    n_moments integer NOT NULL,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    queued_at timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz,
    requeues integer NOT NULL DEFAULT 0,
    UNIQUE (tenant_id, idem_key)
);
CREATE INDEX events_tenant_created ON events (tenant_id, created_at DESC, id DESC);
CREATE INDEX events_waiting ON events (queued_at) WHERE status = 'queued';

CREATE TABLE moments (
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    idx integer NOT NULL,
    tenant_id uuid NOT NULL,
    url text,
    blob text,
    PRIMARY KEY (event_id, idx),
    CHECK ((url IS NULL) <> (blob IS NULL))
);

CREATE TABLE workers (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    token_sha256 bytea NOT NULL,
    dedicated_tenant uuid REFERENCES tenants (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz,
    paused boolean NOT NULL DEFAULT false,
    provider text NOT NULL DEFAULT '',
    model text NOT NULL DEFAULT '',
    metrics jsonb NOT NULL DEFAULT '{}',
    revoked_at timestamptz
);

CREATE TABLE enroll_codes (
    code_sha256 bytea PRIMARY KEY,
    dedicated_tenant uuid REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    worker_id uuid
);

CREATE TABLE results (
    event_id uuid PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    tenant_id uuid NOT NULL,
    worker_id uuid,
    k integer NOT NULL,
    moments jsonb NOT NULL,
    verdict jsonb NOT NULL,
    timings_ms jsonb NOT NULL,
    model text NOT NULL,
    provider text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE usage (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day date NOT NULL,
    deep_reviews integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);

CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempts integer NOT NULL DEFAULT 0,
    next_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    last_error text,
    UNIQUE (event_id)
);
CREATE INDEX webhook_due ON webhook_deliveries (next_at) WHERE status = 'pending';

-- Row-level security: the second wall behind the tenant filter every query already carries.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('tenants', 'id'), ('api_keys', 'tenant_id'), ('events', 'tenant_id'), ('moments', 'tenant_id'),
        ('workers', 'dedicated_tenant'), ('enroll_codes', 'dedicated_tenant'), ('results', 'tenant_id'),
        ('usage', 'tenant_id'), ('webhook_deliveries', 'tenant_id')) AS v(tbl, col)
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t.tbl);
        -- Rows of no tenant (a shared worker, a shared enroll code) are the relay's own ('*') only.
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING (app_tenant_ok(%I)) WITH CHECK (app_tenant_ok(%I))',
            t.tbl, t.col, t.col);
    END LOOP;
END $$;

-- One round trip per accepted event: the idempotency check, the Guardian quota charge and both
-- inserts in one implicit transaction. The quota is charged once per event id (a retried post finds
-- its event first) by one conditional upsert, so concurrent posts cannot overspend it.
CREATE FUNCTION accept_event(
    p_tenant uuid, p_id uuid, p_camera text, p_at timestamptz, p_hint text, p_idem text, p_lane text,
    p_urls text[], p_blobs text[], p_quota integer, p_deep_min integer
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
    RETURN QUERY SELECT v_id, true, v_used, v_at, 'queued'::text, p_lane;
END $$;

GRANT SELECT ON tiers TO insane_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, api_keys, events, moments, workers, enroll_codes, results,
    usage, webhook_deliveries TO insane_app;
GRANT USAGE ON SEQUENCE webhook_deliveries_id_seq TO insane_app;
GRANT EXECUTE ON FUNCTION accept_event, app_tenant_ok TO insane_app;
