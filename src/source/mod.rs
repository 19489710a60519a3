//! What is read from the source under the run's snapshot: server facts and the catalog,
//! what the filters keep, `--hypertable` conversions, TimescaleDB's hypertables and chunks,
//! and the extraction that gathers all of it before the copy.

pub mod catalog;
pub mod convert;
pub mod extract;
pub mod filter;
pub mod hypertables;
