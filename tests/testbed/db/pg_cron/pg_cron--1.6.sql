/* pg_cron--1.6.sql: a stand-in for the real pg_cron, for the cortexreview test bed only.
 * Same catalogue shape as pg_cron 1.6 (schema cron, its sequences and tables, the grant, the
 * RLS policy, pg_extension_config_dump, so pg_dump writes the jobs), the same refusal outside
 * cron.database_name; no shared library and no background worker: jobs are stored, never run. */

\echo Use "CREATE EXTENSION pg_cron" to load this file. \quit

DO $$
BEGIN
   IF pg_catalog.current_database() OPERATOR(pg_catalog.<>) pg_catalog.current_setting('cron.database_name') THEN
      RAISE EXCEPTION 'can only create extension in database %', pg_catalog.current_setting('cron.database_name')
      USING DETAIL = 'Jobs must be scheduled from the database configured in '
                     'cron.database_name, since the pg_cron background worker '
                     'reads job descriptions from this database.',
            HINT = pg_catalog.format('Add cron.database_name = ''%s'' in postgresql.conf '
                                     'to use the current database.', pg_catalog.current_database());
   END IF;
END;
$$;

CREATE SCHEMA cron;
CREATE SEQUENCE cron.jobid_seq;
CREATE TABLE cron.job (
    jobid bigint PRIMARY KEY DEFAULT pg_catalog.nextval('cron.jobid_seq'),
    schedule text NOT NULL,
    command text NOT NULL,
    nodename text NOT NULL DEFAULT 'localhost',
    nodeport int NOT NULL DEFAULT 5432,
    database text NOT NULL DEFAULT pg_catalog.current_database(),
    username text NOT NULL DEFAULT CURRENT_USER,
    active boolean NOT NULL DEFAULT true,
    jobname text,
    CONSTRAINT jobname_username_uniq UNIQUE (jobname, username)
);
ALTER SEQUENCE cron.jobid_seq OWNED BY cron.job.jobid;

CREATE SEQUENCE cron.runid_seq;
CREATE TABLE cron.job_run_details (
    jobid bigint,
    runid bigint PRIMARY KEY DEFAULT pg_catalog.nextval('cron.runid_seq'),
    job_pid integer,
    database text,
    username text,
    command text,
    status text,
    return_message text,
    start_time timestamptz,
    end_time timestamptz
);
ALTER SEQUENCE cron.runid_seq OWNED BY cron.job_run_details.runid;

GRANT USAGE ON SCHEMA cron TO public;
GRANT SELECT ON cron.job TO public;
GRANT SELECT ON cron.job_run_details TO public;
ALTER TABLE cron.job ENABLE ROW LEVEL SECURITY;
CREATE POLICY cron_job_policy ON cron.job USING (username OPERATOR(pg_catalog.=) CURRENT_USER);
ALTER TABLE cron.job_run_details ENABLE ROW LEVEL SECURITY;
CREATE POLICY cron_job_run_details_policy ON cron.job_run_details
    USING (username OPERATOR(pg_catalog.=) CURRENT_USER);

SELECT pg_catalog.pg_extension_config_dump('cron.job', '');
SELECT pg_catalog.pg_extension_config_dump('cron.jobid_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cron.job_run_details', '');
SELECT pg_catalog.pg_extension_config_dump('cron.runid_seq', '');

-- The real functions are C; these store the job the same way (the caller's name, this database).
CREATE FUNCTION cron.schedule(schedule text, command text) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog AS $$
    INSERT INTO cron.job (schedule, command, nodeport, database, username)
    VALUES ($1, $2, pg_catalog.current_setting('port')::int, pg_catalog.current_database(), CURRENT_USER)
    RETURNING jobid;
$$;
COMMENT ON FUNCTION cron.schedule(text, text) IS 'schedule a pg_cron job';

CREATE FUNCTION cron.schedule(job_name text, schedule text, command text) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog AS $$
    INSERT INTO cron.job (jobname, schedule, command, nodeport, database, username)
    VALUES ($1, $2, $3, pg_catalog.current_setting('port')::int, pg_catalog.current_database(), CURRENT_USER)
    ON CONFLICT (jobname, username) DO UPDATE SET schedule = EXCLUDED.schedule, command = EXCLUDED.command
    RETURNING jobid;
$$;
COMMENT ON FUNCTION cron.schedule(text, text, text) IS 'schedule a pg_cron job';

CREATE FUNCTION cron.unschedule(job_id bigint) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM cron.job WHERE jobid = job_id AND username = CURRENT_USER;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'could not find valid entry for job %', job_id;
    END IF;
    RETURN true;
END;
$$;
COMMENT ON FUNCTION cron.unschedule(bigint) IS 'unschedule a pg_cron job';

CREATE FUNCTION cron.unschedule(job_name text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM cron.job WHERE jobname = job_name AND username = CURRENT_USER;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'could not find valid entry for job ''%''', job_name;
    END IF;
    RETURN true;
END;
$$;
COMMENT ON FUNCTION cron.unschedule(text) IS 'unschedule a pg_cron job';
