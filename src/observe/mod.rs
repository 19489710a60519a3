//! What a run tells the world while and after it runs: progress on the terminal, the
//! Prometheus metrics, the JSON report.

pub mod metrics;
pub mod progress;
pub mod report;
