-- Content fingerprint of the test bed's seeded tables, one JSON object: an md5 of every
-- row of each table in key order. feedback_audit_log only up to id :max_id (psql -v max_id=N),
-- since the writer keeps adding rows. Used by converge.yml before the backup, and by
-- tests/test_restore.py on the restored database.
SELECT json_build_object(
    'knowledge_base',
    (SELECT md5(string_agg(t::text, E'\n' ORDER BY t.id)) FROM public.knowledge_base AS t),
    'learned_constraints',
    (SELECT md5(string_agg(t::text, E'\n' ORDER BY t.id)) FROM public.learned_constraints AS t),
    'feedback_audit_log',
    (SELECT md5(string_agg(t::text, E'\n' ORDER BY t.id)) FROM public.feedback_audit_log AS t
      WHERE t.id <= :max_id),
    'Weird Table',
    (SELECT md5(string_agg(t::text, E'\n' ORDER BY t."ID")) FROM public."Weird Table" AS t),
    'empty_table',
    (SELECT count(*) FROM public.empty_table));
