//! tsxfer: migrate a whole PostgreSQL or TimescaleDB database to another server.
//!
//! The binary is a thin shell over this library: `cli` parses flags, `migrate` runs the
//! phases, and the modules below it each own one responsibility.

pub mod budget;
pub mod catalog;
pub mod catalog_rows;
pub mod checksum;
pub mod cli;
pub mod conninfo;
pub mod convert;
pub mod copy;
pub mod error;
pub mod extract;
pub mod filter;
pub mod framing;
pub mod hypertables;
pub mod metrics;
pub mod migrate;
pub mod offline;
pub mod pg;
pub mod plan;
pub mod pool;
pub mod preflight;
pub mod privileges;
pub mod progress;
pub mod quote;
pub mod report;
pub mod reset;
pub mod retry;
pub mod roles;
pub mod schema;
pub mod state;
pub mod tls;
pub mod unit_book;
pub mod verify;
