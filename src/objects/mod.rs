//! The objects of a database other than its rows, one module per kind: roles, owners and
//! grants, the schema (pg_dump archives restored with pg_restore), the chunk tables' DDL
//! (generated from the catalog), TimescaleDB's catalog rows. Each reads its kind on the source and applies it on the target.

pub mod catalog_rows;
pub mod chunk_ddl;
pub mod privileges;
pub mod roles;
pub mod schema;
