-- ALTER DEFAULT PRIVILEGES entries: (role, schema or '', object type letter, grantee or ''
-- for PUBLIC, privilege, grantable).
SELECT r.rolname::text AS role,
       COALESCE(n.nspname::text, '') AS schema_name,
       d.defaclobjtype::text AS objtype,
       COALESCE(g.rolname::text, '') AS grantee,
       x.privilege_type::text AS privilege,
       x.is_grantable AS grantable
FROM pg_catalog.pg_default_acl d
JOIN pg_catalog.pg_roles r ON r.oid = d.defaclrole
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL aclexplode(d.defaclacl) AS x
LEFT JOIN pg_catalog.pg_roles g ON g.oid = x.grantee
ORDER BY 1, 2, 3, 4, 5
