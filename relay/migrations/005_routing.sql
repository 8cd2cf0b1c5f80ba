-- Per-tenant routing: which workers may review a tenant's events.
--   own              only workers dedicated to the tenant (events wait, visibly, while none is online)
--   shared           the operator's shared pool
--   own-then-shared  its own workers first; the shared pool after shared_after_s without one taking it
-- NULL routing is automatic: own once the tenant has a dedicated worker that is not revoked, else shared.
-- The relay mirrors the effective routing into Redis (insane:{t:<id>}:routing), where the pool's take
-- reads it; the events themselves move to per-tenant lanes when a relay of this version starts.
ALTER TABLE tenants ADD COLUMN routing text CHECK (routing IN ('own', 'shared', 'own-then-shared'));
ALTER TABLE tenants ADD COLUMN shared_after_s double precision CHECK (shared_after_s >= 0 AND shared_after_s <= 86400);
CREATE INDEX workers_dedicated ON workers (dedicated_tenant) WHERE dedicated_tenant IS NOT NULL;
