-- The result stream resumes from a cursor (GET /v1/events/stream with Last-Event-ID): it reads one
-- tenant's results in the order they were stored, from a point in time.
CREATE INDEX results_tenant_updated ON results (tenant_id, updated_at, event_id);
