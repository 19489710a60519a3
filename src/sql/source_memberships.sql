SELECT r.rolname::text AS role,
       m.rolname::text AS member,
       g.rolname::text AS grantor,
       am.admin_option
FROM pg_catalog.pg_auth_members am
JOIN pg_catalog.pg_roles r ON r.oid = am.roleid
JOIN pg_catalog.pg_roles m ON m.oid = am.member
LEFT JOIN pg_catalog.pg_roles g ON g.oid = am.grantor
ORDER BY 2, 1
