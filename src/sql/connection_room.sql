-- How many more sessions this role may open in this database: what max_connections leaves
-- after the slots reserved for superusers and the client sessions open now, and what the
-- role's and the database's CONNECTION LIMIT leave (superusers are exempt from both).
SELECT current_setting('max_connections')::int
       - CASE WHEN r.rolsuper THEN 0
              ELSE current_setting('superuser_reserved_connections')::int END
       - (SELECT count(*) FROM pg_catalog.pg_stat_activity
          WHERE backend_type = 'client backend')::int,
       CASE WHEN r.rolsuper OR r.rolconnlimit < 0 THEN NULL
            ELSE r.rolconnlimit - (SELECT count(*) FROM pg_catalog.pg_stat_activity
                                   WHERE usesysid = r.oid
                                     AND backend_type = 'client backend')::int END,
       CASE WHEN r.rolsuper OR d.datconnlimit < 0 THEN NULL
            ELSE d.datconnlimit - (SELECT count(*) FROM pg_catalog.pg_stat_activity
                                   WHERE datid = d.oid
                                     AND backend_type = 'client backend')::int END
FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
WHERE r.rolname = current_user AND d.datname = current_database()
