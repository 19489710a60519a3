SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_database()::text AS dbname,
       current_user::text AS login,
       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS superuser,
       (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata) AS large_objects,
       current_setting('max_locks_per_transaction')::int AS max_locks,
       current_setting('max_connections')::int AS max_connections,
       -- the shared lock table has room for max_locks_per_transaction locks per possible
       -- backend (connections, autovacuum and background workers, WAL senders, prepared
       -- transactions)
       (current_setting('max_locks_per_transaction')::int8
        * (current_setting('max_connections')::int8
           + current_setting('autovacuum_max_workers')::int8 + 1
           + current_setting('max_worker_processes')::int8
           + current_setting('max_wal_senders')::int8
           + current_setting('max_prepared_transactions')::int8)) AS lock_slots,
       COALESCE(current_setting('timescaledb.license', true), '') AS timescaledb_license,
       ARRAY(SELECT DISTINCT w.fdwname::text FROM pg_catalog.pg_foreign_server s
             JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw ORDER BY 1) AS foreign_data_wrappers
