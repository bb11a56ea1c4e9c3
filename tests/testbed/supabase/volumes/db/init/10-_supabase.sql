-- cortexreview test bed, Supabase profile: the `_supabase` database (docker/volumes/db/
-- _supabase.sql, logs.sql, pooler.sql): Logflare's `_analytics`, Supavisor's `_supavisor`.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE DATABASE _supabase WITH OWNER supabase_admin;
ALTER DATABASE _supabase SET statement_timeout = '60s';
ALTER ROLE supabase_admin IN DATABASE _supabase SET search_path = _supavisor, _analytics, public;
\connect _supabase
CREATE SCHEMA IF NOT EXISTS _analytics;
ALTER SCHEMA _analytics OWNER TO supabase_admin;
CREATE SCHEMA IF NOT EXISTS _supavisor;
ALTER SCHEMA _supavisor OWNER TO supabase_admin;
REVOKE ALL ON SCHEMA _analytics, _supavisor FROM PUBLIC;
\connect postgres
COMMENT ON DATABASE _supabase IS 'Supabase services: Logflare analytics, Supavisor pooler';
REVOKE CONNECT, TEMPORARY ON DATABASE _supabase FROM PUBLIC;
GRANT CONNECT ON DATABASE _supabase TO supabase_admin, pgbouncer, dashboard_user;
