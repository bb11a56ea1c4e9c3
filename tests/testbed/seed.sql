-- cortexreview test bed: schema + deterministic seed data.
--
-- Implements the schema named in /work/shared/backup-restore-contract.md:
--   tables    knowledge_base, learned_constraints, feedback_audit_log
--   indexes   IVFFlat (pgvector), GIN, B-tree
--   functions match_knowledge(vector, float, int), check_constraints(text, text)
-- plus two tables that exercise dump parsing:
--   public."Weird Table"  (quoted/space/uppercase name, values with tabs,
--                          newlines, backslashes, CRs and a line that is
--                          literally "\." -- escaped by COPY as "\\.")
--   public.empty_table    (no rows: COPY block with no data lines)
--
-- Re-runnable: drops and recreates everything it owns (the vector
-- extension is kept).  Run with:
--   psql -X -v ON_ERROR_STOP=1 --single-transaction -f seed.sql
--
-- Expected counts after seeding (the api/worker containers add more rows to
-- feedback_audit_log continuously, with actor 'api' / 'worker'):
--   knowledge_base 300 (or :kb_rows), learned_constraints 50,
--   feedback_audit_log 100 rows with actor = 'seed',
--   "Weird Table" 6, empty_table 0.

\set ON_ERROR_STOP on
-- Row count of knowledge_base; override with  psql -v kb_rows=20000  (the
-- stack.sh seed / demo scripts pass $SEED_KB_ROWS) for a larger data set.
\if :{?kb_rows}
\else
\set kb_rows 300
\endif
SET client_min_messages = warning;
-- IVFFlat build memory (lists = 100, vector(1536)) grows with the row count
-- up to ~65 MB at >= 10000 rows -- above the server default of 64 MB.  With
-- the default 300 rows it needs ~15 MB.  NB: a plain pg_dump does NOT carry
-- this setting: restoring a large knowledge_base into a default-configured
-- server needs it raised too (e.g. PGOPTIONS='-c maintenance_work_mem=256MB').
SET maintenance_work_mem = '256MB';

CREATE EXTENSION IF NOT EXISTS vector;

DROP FUNCTION IF EXISTS public.match_knowledge(vector, double precision, integer);
DROP FUNCTION IF EXISTS public.check_constraints(text, text);
DROP TABLE IF EXISTS public.knowledge_base, public.learned_constraints,
    public.feedback_audit_log, public."Weird Table", public.empty_table CASCADE;

-- ---------------------------------------------------------------- tables --

CREATE TABLE public.knowledge_base (
    id          bigserial PRIMARY KEY,
    content     text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding   vector(1536),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.knowledge_base IS 'RAG knowledge items with OpenAI-sized embeddings';

CREATE TABLE public.learned_constraints (
    id               serial PRIMARY KEY,
    constraint_type  text NOT NULL,
    pattern          text NOT NULL,
    description      text,
    severity         text NOT NULL DEFAULT 'warning'
                     CHECK (severity IN ('info', 'warning', 'error')),
    confidence       real NOT NULL DEFAULT 0.5 CHECK (confidence BETWEEN 0 AND 1),
    active           boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz
);

CREATE TABLE public.feedback_audit_log (
    id          bigserial PRIMARY KEY,
    event_type  text NOT NULL,
    actor       text NOT NULL DEFAULT 'system',
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public."Weird Table" (
    "ID"          integer PRIMARY KEY,
    "Mixed Case"  text,
    "tab	col"     text,   -- column name contains a TAB
    note          text
);

CREATE TABLE public.empty_table (
    id    integer PRIMARY KEY,
    label text
);

-- ------------------------------------------------------------- functions --

-- Cosine-similarity search (pgvector <=> is cosine distance).
CREATE FUNCTION public.match_knowledge(
    query_embedding vector(1536),
    match_threshold double precision,
    match_count integer)
RETURNS TABLE (id bigint, content text, similarity double precision)
LANGUAGE sql STABLE
AS $$
    SELECT kb.id,
           kb.content,
           1 - (kb.embedding <=> query_embedding) AS similarity
    FROM public.knowledge_base AS kb
    WHERE kb.embedding IS NOT NULL
      AND 1 - (kb.embedding <=> query_embedding) > match_threshold
    ORDER BY kb.embedding <=> query_embedding
    LIMIT match_count
$$;

-- Active, unexpired constraints whose regex pattern matches the given text
-- (optionally restricted to one constraint_type).
CREATE FUNCTION public.check_constraints(
    input_text text,
    constraint_kind text DEFAULT NULL)
RETURNS TABLE (constraint_id integer, constraint_type text, severity text,
               description text, confidence real)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN QUERY
    SELECT lc.id, lc.constraint_type, lc.severity, lc.description, lc.confidence
    FROM public.learned_constraints AS lc
    WHERE lc.active
      AND (lc.expires_at IS NULL OR lc.expires_at > now())
      AND (constraint_kind IS NULL OR lc.constraint_type = constraint_kind)
      AND input_text ~* lc.pattern
    ORDER BY lc.confidence DESC, lc.id;
END;
$$;

-- ------------------------------------------------------------- seed data --
-- Deterministic: fixed setseed() and fixed timestamps.

SELECT setseed(0.42);

-- 10 topic centroids; each knowledge item = centroid of its topic + noise,
-- so items of one topic have cosine similarity ~0.8 with each other and ~0
-- with other topics (match_knowledge with threshold 0.75 returns neighbours).
CREATE TEMPORARY TABLE _centroid AS
SELECT t.topic, d.dim, random() - 0.5 AS val
FROM generate_series(0, 9) AS t(topic)
CROSS JOIN generate_series(1, 1536) AS d(dim)
ORDER BY t.topic, d.dim;

INSERT INTO public.knowledge_base (content, metadata, embedding, created_at)
SELECT
    format('Knowledge item %s (topic %s): review guideline about %s', g, g % 10,
           (ARRAY['naming', 'error handling', 'logging', 'tests', 'security',
                  'performance', 'docs', 'typing', 'concurrency', 'style'])[g % 10 + 1]),
    jsonb_build_object('topic', g % 10,
                       'source', (ARRAY['docs', 'review', 'feedback'])[g % 3 + 1],
                       'tags', jsonb_build_array('t' || (g % 7), 'seed')),
    (SELECT array_agg(c.val + (random() - 0.5) * 0.5 ORDER BY c.dim)
       FROM _centroid AS c WHERE c.topic = g % 10)::vector(1536),
    timestamptz '2025-01-01 00:00:00+00' + g * interval '1 hour'
FROM generate_series(1, :kb_rows) AS g;

INSERT INTO public.learned_constraints
    (constraint_type, pattern, description, severity, confidence, active, created_at, expires_at)
SELECT
    (ARRAY['naming', 'security', 'style', 'performance', 'testing'])[g % 5 + 1],
    (ARRAY['\mTODO\M', 'password\s*=', '\t', 'SELECT \*', '\mprint\(',
           'eval\(', '\mfixme\M', 'sleep\(', 'except:', 'assert '])[g % 10 + 1],
    format('Learned constraint #%s', g),
    (ARRAY['info', 'warning', 'error'])[g % 3 + 1],
    round((0.5 + (g % 50) / 100.0)::numeric, 2)::real,
    g % 17 <> 0,
    timestamptz '2025-06-01 00:00:00+00' + g * interval '1 day',
    CASE WHEN g <= 40 THEN timestamptz '2099-01-01 00:00:00+00'   -- long-lived
         ELSE timestamptz '2025-09-01 00:00:00+00' + g * interval '1 day'  -- expired
    END
FROM generate_series(1, 50) AS g;

INSERT INTO public.feedback_audit_log (event_type, actor, payload, created_at)
SELECT
    (ARRAY['feedback_received', 'constraint_learned', 'constraint_expired', 'review_posted'])[g % 4 + 1],
    'seed',
    jsonb_build_object('seq', g, 'rating', g % 5 + 1, 'note', 'seed row ' || g),
    timestamptz '2025-03-01 00:00:00+00' + g * interval '10 minutes'
FROM generate_series(1, 100) AS g;

INSERT INTO public."Weird Table" ("ID", "Mixed Case", "tab	col", note) VALUES
    (1, 'plain', 'a', 'nothing special'),
    (2, E'tab\there', E'two\ttabs\t', E'line one\nline two\nline three'),
    (3, E'back\\slash', E'C:\\temp\\new', E'ends with backslash \\'),
    -- a line that is literally "\." : end-of-data marker in old COPY text
    (4, E'first line\n\\.\nlast line', E'\\.', E'\\.\n'),
    (5, E'carriage\r\nreturn', '', NULL),
    (6, 'unicode äöü ✓ 🚀', E'quote '' and "double"', E'-- not a comment\n;DROP TABLE x;');

DROP TABLE _centroid;

-- --------------------------------------------------------------- indexes --
-- Built after the data load (like pg_dump does), so the IVFFlat lists are
-- trained on real rows (an IVFFlat built on an empty table is useless).

CREATE INDEX knowledge_base_embedding_ivfflat_idx
    ON public.knowledge_base USING ivfflat (embedding vector_cosine_ops) WITH (lists = 100);
CREATE INDEX knowledge_base_metadata_gin_idx
    ON public.knowledge_base USING gin (metadata jsonb_path_ops);
CREATE INDEX knowledge_base_content_fts_idx
    ON public.knowledge_base USING gin (to_tsvector('english'::regconfig, content));
CREATE INDEX knowledge_base_created_at_idx
    ON public.knowledge_base USING btree (created_at);
CREATE INDEX learned_constraints_expires_at_idx
    ON public.learned_constraints USING btree (expires_at);
CREATE INDEX learned_constraints_type_idx
    ON public.learned_constraints USING btree (constraint_type, active);
CREATE INDEX feedback_audit_log_created_at_idx
    ON public.feedback_audit_log USING btree (created_at);
CREATE INDEX feedback_audit_log_actor_idx
    ON public.feedback_audit_log USING btree (actor, event_type);


ANALYZE public.knowledge_base, public.learned_constraints, public.feedback_audit_log,
        public."Weird Table", public.empty_table;
