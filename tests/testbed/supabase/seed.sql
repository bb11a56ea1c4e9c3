-- cortexreview test bed, Supabase profile: what a project's users and services put into a
-- Supabase stack after its first start (loaded after tests/testbed/seed.sql by
-- `stack.sh up`/`seed`; `up --no-seed` leaves a fresh stack without it, as a new host is):
-- an operator's roles with memberships, settings and grants, auth users, a table with RLS
-- policies, Storage buckets and policies (the objects' rows come from seed_storage.py with
-- their files), a Vault secret, pg_cron with two jobs, and rows in `_supabase`. Deterministic; may be run again.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

BEGIN;
-- ------------------------------------------------------- operator's roles --
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cortexreview_readers') THEN
        CREATE ROLE cortexreview_readers NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cortexreview_app') THEN
        CREATE ROLE cortexreview_app LOGIN CONNECTION LIMIT 20;
    END IF;
END
$$;
-- a test-only password: a fresh stack has no such role until the globals are restored
ALTER ROLE cortexreview_app PASSWORD 'cortexreview-app-test-password' VALID UNTIL '2099-01-01 00:00:00+00';
GRANT cortexreview_readers TO cortexreview_app WITH ADMIN OPTION;
GRANT authenticated TO cortexreview_app;
ALTER ROLE cortexreview_app SET statement_timeout = '15s';
ALTER ROLE cortexreview_app IN DATABASE postgres SET work_mem = '8MB';
GRANT SELECT ON public.knowledge_base, public.learned_constraints TO cortexreview_readers;
GRANT SELECT, INSERT ON public.feedback_audit_log TO cortexreview_app;
GRANT USAGE ON SEQUENCE public.feedback_audit_log_id_seq TO cortexreview_app;
GRANT SELECT (id, email) ON auth.users TO cortexreview_app;
REVOKE ALL ON public."Weird Table" FROM anon;

-- ------------------------------------------------------------ auth users --
DELETE FROM storage.objects;
DELETE FROM storage.buckets;
DELETE FROM auth.users;
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,
                        raw_app_meta_data, raw_user_meta_data, is_super_admin, created_at, updated_at)
SELECT '00000000-0000-0000-0000-000000000000', ('00000000-0000-4000-8000-00000000000' || g)::uuid,
       'authenticated', 'authenticated', format('user%s@example.test', g),
       '$2a$10$' || substr(encode(sha256(convert_to('user' || g, 'UTF8')), 'hex'), 1, 53),
       '{"provider": "email", "providers": ["email"]}', jsonb_build_object('name', 'User ' || g),
       false, timestamptz '2025-02-01 00:00:00+00' + g * interval '1 day',
       timestamptz '2025-02-01 00:00:00+00' + g * interval '1 day'
FROM generate_series(1, 3) AS g;
INSERT INTO auth.refresh_tokens (token, user_id, revoked, created_at)
SELECT 'token-' || g, ('00000000-0000-4000-8000-00000000000' || (g % 3 + 1))::uuid, g = 1,
       timestamptz '2025-02-10 00:00:00+00' + g * interval '1 hour'
FROM generate_series(1, 4) AS g;

-- ----------------------------------------------------- a table with RLS --
DROP TABLE IF EXISTS public.profiles;
CREATE TABLE public.profiles (
    id        uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    username  text UNIQUE,
    avatar    text
);
COMMENT ON TABLE public.profiles IS 'one row per auth user; RLS: everyone reads, the owner writes';
ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.profiles FORCE ROW LEVEL SECURITY;
CREATE POLICY "Profiles are viewable by everyone" ON public.profiles FOR SELECT USING (true);
CREATE POLICY "Users update their own profile" ON public.profiles FOR UPDATE TO authenticated
    USING (auth.uid() = id) WITH CHECK (auth.uid() = id);
CREATE POLICY "Users insert their own profile" ON public.profiles AS RESTRICTIVE FOR INSERT
    TO authenticated WITH CHECK (auth.uid() = id);
REVOKE TRUNCATE ON public.profiles FROM anon, authenticated;
ALTER PUBLICATION supabase_realtime ADD TABLE public.profiles;
INSERT INTO public.profiles (id, username, avatar)
SELECT id, split_part(email, '@', 1), 'user' || right(id::text, 1) || '/avatar.png' FROM auth.users;

-- ------------------------------------------------- Storage buckets, policies --
INSERT INTO storage.buckets (id, name, owner, public, file_size_limit, allowed_mime_types, created_at, updated_at)
VALUES ('avatars', 'avatars', NULL, true, 1048576, ARRAY['image/png', 'image/jpeg'],
        '2025-02-01 00:00:00+00', '2025-02-01 00:00:00+00'),
       ('documents', 'documents', '00000000-0000-4000-8000-000000000001', false, NULL, NULL,
        '2025-02-02 00:00:00+00', '2025-02-02 00:00:00+00');
DROP POLICY IF EXISTS "Avatars are public" ON storage.objects;
DROP POLICY IF EXISTS "Owners read their documents" ON storage.objects;
DROP POLICY IF EXISTS "Owners upload into their folder" ON storage.objects;
CREATE POLICY "Avatars are public" ON storage.objects FOR SELECT TO anon, authenticated
    USING (bucket_id = 'avatars');
CREATE POLICY "Owners read their documents" ON storage.objects FOR SELECT TO authenticated
    USING (bucket_id = 'documents' AND owner = auth.uid());
CREATE POLICY "Owners upload into their folder" ON storage.objects FOR INSERT TO authenticated
    WITH CHECK (bucket_id = 'documents' AND (storage.foldername(name))[1] = auth.uid()::text);

-- --------------------------------------------------------------- Vault --
DELETE FROM vault.secrets WHERE name = 'seed_api_key';
SELECT vault.create_secret('sk-test-seeded-secret ✓ 0123456789abcdef0123456789abcdef',
                           'seed_api_key', 'stored by the test bed seed') IS NOT NULL AS stored;

-- ------------------------------------------------------------- pg_cron --
-- The stand-in pg_cron (tests/testbed/db/pg_cron: no worker, the jobs never run), created where
-- cron.database_name points, with the grants Supabase's image gives postgres, two jobs (one named)
-- and a run's record; pg_dump writes them (pg_extension_config_dump).
CREATE EXTENSION IF NOT EXISTS pg_cron WITH SCHEMA pg_catalog;
GRANT USAGE ON SCHEMA cron TO postgres WITH GRANT OPTION;
GRANT ALL ON ALL TABLES IN SCHEMA cron TO postgres WITH GRANT OPTION;
GRANT ALL ON ALL SEQUENCES IN SCHEMA cron TO postgres WITH GRANT OPTION;
GRANT ALL ON ALL ROUTINES IN SCHEMA cron TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES IN SCHEMA cron GRANT ALL ON TABLES TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES IN SCHEMA cron GRANT ALL ON SEQUENCES TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES IN SCHEMA cron GRANT ALL ON ROUTINES TO postgres WITH GRANT OPTION;
DELETE FROM cron.job_run_details;
DELETE FROM cron.job;
SELECT setval('cron.jobid_seq', 1, false), setval('cron.runid_seq', 1, false);
SELECT cron.schedule('*/10 * * * *', 'DELETE FROM auth.refresh_tokens WHERE revoked');
SELECT cron.schedule('nightly-vacuum', '0 3 * * *', 'VACUUM ANALYZE public.knowledge_base');
INSERT INTO cron.job_run_details (jobid, job_pid, database, username, command, status, return_message,
                                  start_time, end_time)
VALUES (2, 4242, 'postgres', 'postgres', 'VACUUM ANALYZE public.knowledge_base', 'succeeded', 'VACUUM',
        '2025-02-10 03:00:00+00', '2025-02-10 03:00:02+00');
COMMIT;

-- ------------------------------------------------------------ _supabase --
\connect _supabase
SET client_min_messages = warning;
BEGIN;
DROP TABLE IF EXISTS _supavisor.users, _supavisor.tenants, _analytics.sources, _analytics.schema_migrations;
CREATE TABLE _supavisor.tenants (
    id           uuid PRIMARY KEY,
    external_id  text NOT NULL UNIQUE,
    db_host      text NOT NULL,
    db_port      integer NOT NULL,
    db_database  text NOT NULL,
    require_user boolean NOT NULL DEFAULT false,
    inserted_at  timestamp(0) NOT NULL
);
CREATE TABLE _supavisor.users (
    id                 uuid PRIMARY KEY,
    tenant_external_id text NOT NULL REFERENCES _supavisor.tenants (external_id) ON DELETE CASCADE,
    db_user            text NOT NULL,
    db_pass_encrypted  bytea NOT NULL,
    pool_size          integer NOT NULL,
    mode_type          text NOT NULL,
    inserted_at        timestamp(0) NOT NULL
);
CREATE TABLE _analytics.sources (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    token       uuid NOT NULL UNIQUE,
    inserted_at timestamp(0) NOT NULL
);
CREATE TABLE _analytics.schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp(0));
INSERT INTO _supavisor.tenants VALUES
    ('10000000-0000-4000-8000-000000000001', 'your-tenant-id', 'db', 5432, 'postgres', true, '2025-01-01 00:00:00');
INSERT INTO _supavisor.users VALUES
    ('10000000-0000-4000-8000-000000000002', 'your-tenant-id', 'pgbouncer',
     '\x0102030405060708090a0b0c0d0e0f10'::bytea, 20, 'transaction', '2025-01-01 00:00:00');
INSERT INTO _analytics.sources (name, token, inserted_at)
SELECT s, ('20000000-0000-4000-8000-00000000000' || g)::uuid, timestamp '2025-01-01 00:00:00' + g * interval '1 minute'
FROM unnest(ARRAY['cloudflare.logs.prod', 'postgres.logs', 'deno-relay-logs', 'realtime.logs.prod']) WITH ORDINALITY AS t(s, g);
INSERT INTO _analytics.schema_migrations VALUES (20210729161959, '2025-01-01 00:00:00'), (20210810182003, '2025-01-01 00:00:00');
ALTER TABLE _supavisor.tenants OWNER TO supabase_admin;
ALTER TABLE _supavisor.users OWNER TO supabase_admin;
ALTER TABLE _analytics.sources OWNER TO supabase_admin;
ALTER TABLE _analytics.schema_migrations OWNER TO supabase_admin;
GRANT SELECT ON _supavisor.tenants TO pgbouncer;
COMMIT;
