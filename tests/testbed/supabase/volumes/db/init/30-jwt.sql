-- cortexreview test bed, Supabase profile: ALTER DATABASE ... SET from the .env at first
-- start (docker/volumes/db/jwt.sql).
\set ON_ERROR_STOP on
\set jwt_secret `echo "$JWT_SECRET"`
\set jwt_exp `echo "$JWT_EXP"`
ALTER DATABASE postgres SET "app.settings.jwt_secret" TO :'jwt_secret';
ALTER DATABASE postgres SET "app.settings.jwt_exp" TO :'jwt_exp';
\unset jwt_secret
