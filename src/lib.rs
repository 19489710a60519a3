//! tsxfer: migrate a whole PostgreSQL or TimescaleDB database to another server.
//!
//! The binary is a thin shell over this library: `cli` parses flags, `run` runs the
//! phases, and the folders below it each own one responsibility, in layers a folder never
//! imports one above (ARCHITECTURE.md; `tests/layers.rs` checks it).

pub mod cli;
pub mod copy;
pub mod dump;
pub mod error;
pub mod objects;
pub mod observe;
pub mod pg;
pub mod plan;
pub mod quote;
pub mod run;
pub mod source;
pub mod target;
