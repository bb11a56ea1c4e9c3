-- cortexreview test bed, Supabase profile: the services' passwords from POSTGRES_PASSWORD at
-- first start (docker/volumes/db/roles.sql; supabase_admin's from the image's migrate.sh).
\set ON_ERROR_STOP on
\set pgpass `echo "$POSTGRES_PASSWORD"`
ALTER USER supabase_admin WITH PASSWORD :'pgpass';
ALTER USER authenticator WITH PASSWORD :'pgpass';
ALTER USER pgbouncer WITH PASSWORD :'pgpass';
ALTER USER supabase_auth_admin WITH PASSWORD :'pgpass';
ALTER USER supabase_functions_admin WITH PASSWORD :'pgpass';
ALTER USER supabase_storage_admin WITH PASSWORD :'pgpass';
\unset pgpass
