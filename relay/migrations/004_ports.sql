-- Ports a tenant's URLs may use besides 80, 443 and 8080-8999 (core/ssrf.py's port policy), set by the
-- operator (`insane tenant ports`, PUT /admin/tenants/{tenant}/ports). They apply to the tenant's moment
-- URLs on every worker and to its webhook; a host on the private-host allow-list may use any port already.

ALTER TABLE tenants ADD COLUMN allow_ports integer[] NOT NULL DEFAULT '{}'
    CHECK (cardinality(allow_ports) <= 64 AND 1 <= ALL (allow_ports) AND 65535 >= ALL (allow_ports));
