#!/bin/sh
# Runs once, when the PostgreSQL container creates its data folder (docker-entrypoint-initdb.d).
# The relay's migrations create the role it serves requests as (insane_app) without a password; over
# the compose network every login needs one, so create it here first, with its password. The
# migration then finds the role already there and leaves it alone.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
	-v app_password="$INSANE_APP_DB_PASSWORD" <<'SQL'
CREATE ROLE insane_app LOGIN PASSWORD :'app_password';
SQL
