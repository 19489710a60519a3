-- Of the extensions named in $1, those the target lacks and its login role may not
-- create: it is not a superuser and the version CREATE EXTENSION would install is not
-- trusted.
SELECT a.name::text
FROM pg_catalog.pg_available_extensions a
WHERE a.name = ANY ($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = a.name)
  AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extension_versions v
                  WHERE v.name = a.name AND v.version = a.default_version AND v.trusted)
ORDER BY 1
