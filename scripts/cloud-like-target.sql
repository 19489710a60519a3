-- Makes the current database cloud-like for the role :"admin" (psql -v admin=...), the
-- way managed services prepare their admin role: TimescaleDB created by a superuser, its
-- restore functions callable by that role only (SECURITY DEFINER), and use of its
-- internal schemas. Run as a superuser, in the database the role owns.
CREATE EXTENSION IF NOT EXISTS timescaledb;
BEGIN;
ALTER FUNCTION public.timescaledb_pre_restore() SECURITY DEFINER;
ALTER FUNCTION public.timescaledb_post_restore() SECURITY DEFINER;
REVOKE EXECUTE ON FUNCTION public.timescaledb_pre_restore() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION public.timescaledb_post_restore() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.timescaledb_pre_restore() TO :"admin";
GRANT EXECUTE ON FUNCTION public.timescaledb_post_restore() TO :"admin";
SELECT set_config('tsxfer.admin', :'admin', true);
DO $grants$
DECLARE
    s text;
    admin text := current_setting('tsxfer.admin');
BEGIN
    FOREACH s IN ARRAY ARRAY['_timescaledb_catalog', '_timescaledb_config', '_timescaledb_internal',
                             '_timescaledb_functions', '_timescaledb_cache', '_timescaledb_debug'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = s);
        EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO %I', s, admin);
        EXECUTE format('GRANT ALL ON ALL TABLES IN SCHEMA %I TO %I', s, admin);
        EXECUTE format('GRANT ALL ON ALL SEQUENCES IN SCHEMA %I TO %I', s, admin);
        IF s IN ('_timescaledb_functions', '_timescaledb_internal') THEN
            EXECUTE format('GRANT EXECUTE ON ALL ROUTINES IN SCHEMA %I TO %I', s, admin);
        END IF;
    END LOOP;
END
$grants$;
COMMIT;
