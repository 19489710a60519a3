//! The Prometheus metrics of a run. Every name is a constant in [`METRICS`], described once
//! when the exporter is installed; the dashboard in `grafana/` and
//! `docs/observability.md` use exactly these names. [`Instruments`] registers the handles
//! once per run, so the hooks called for every buffer only touch atomics.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::error::{Error, ErrorKind, Result};
use crate::observe::progress::UnitState;
use crate::plan::UnitKind;

pub const COPIED_BYTES: &str = "tsxfer_copied_bytes_total";
pub const COPIED_ROWS: &str = "tsxfer_copied_rows_total";
pub const ESTIMATED_BYTES: &str = "tsxfer_estimated_bytes";
pub const UNITS: &str = "tsxfer_units";
pub const STREAMS: &str = "tsxfer_streams";
pub const ACTIVE_STREAMS: &str = "tsxfer_active_streams";
pub const BACKPRESSURE_WAIT: &str = "tsxfer_backpressure_wait_seconds";
pub const UNIT_DURATION: &str = "tsxfer_unit_duration_seconds";
pub const UNIT_RETRIES: &str = "tsxfer_unit_retries_total";
pub const UNIT_FAILURES: &str = "tsxfer_unit_failures_total";
pub const RUN_ERRORS: &str = "tsxfer_run_errors_total";
pub const PHASE: &str = "tsxfer_phase";
pub const START_TIME: &str = "tsxfer_start_time_seconds";
pub const BUILD_INFO: &str = "tsxfer_build_info";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric: its name, type, labels and meaning.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricType,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

/// Every metric tsxfer exports.
pub const METRICS: &[Metric] = &[
    metric(
        COPIED_BYTES,
        MetricType::Counter,
        &["kind"],
        "COPY bytes handed to the target, by unit kind (a unit that is retried counts again)",
    ),
    metric(
        COPIED_ROWS,
        MetricType::Counter,
        &["kind"],
        "Rows handed to the target, by unit kind (large objects count one row each)",
    ),
    metric(
        ESTIMATED_BYTES,
        MetricType::Gauge,
        &[],
        "Estimated size of all data units, from the source's relation sizes (0 until planned)",
    ),
    metric(
        UNITS,
        MetricType::Gauge,
        &["state"],
        "Data units by state: pending, running, done, failed",
    ),
    metric(
        STREAMS,
        MetricType::Gauge,
        &[],
        "COPY streams the run may open (--jobs)",
    ),
    metric(
        ACTIVE_STREAMS,
        MetricType::Gauge,
        &[],
        "COPY streams copying a unit now",
    ),
    metric(
        BACKPRESSURE_WAIT,
        MetricType::Histogram,
        &[],
        "Time a stream waited for the target to take a buffer; the _sum is the total time blocked on backpressure",
    ),
    metric(
        UNIT_DURATION,
        MetricType::Histogram,
        &["kind"],
        "Wall time of each copied unit, by unit kind",
    ),
    metric(
        UNIT_RETRIES,
        MetricType::Counter,
        &["kind"],
        "Units that failed and went back to the queue, by unit kind",
    ),
    metric(
        UNIT_FAILURES,
        MetricType::Counter,
        &["kind"],
        "Units that failed for good, by unit kind",
    ),
    metric(
        RUN_ERRORS,
        MetricType::Counter,
        &["phase"],
        "Errors that ended the run (interruptions included), by the phase they ended",
    ),
    metric(
        PHASE,
        MetricType::Gauge,
        &["phase"],
        "1 for the phase the run is in (preflight, roles, schema dump, schema, data, post-data, owners and grants, analyze, verify, then done or failed), 0 for phases it left",
    ),
    metric(
        START_TIME,
        MetricType::Gauge,
        &[],
        "When the run started, in seconds since the Unix epoch",
    ),
    metric(
        BUILD_INFO,
        MetricType::Gauge,
        &["version"],
        "Always 1; the version label is tsxfer's version",
    ),
];

/// Every phase a run, a dump or a worker goes through, then how it ended: the `phase`
/// labels of [`PHASE`] and [`RUN_ERRORS`], registered (at 0) before the run so that a
/// dashboard or an alert finds each series from the first scrape.
pub const PHASES: &[&str] = &[
    "preflight",
    "roles",
    "schema dump",
    "schema",
    "data",
    "post-data",
    "owners and grants",
    "analyze",
    "verify",
    "done",
    "failed",
];

/// Every unit kind, in the order the summary lists them.
pub const UNIT_KINDS: [UnitKind; 7] = UnitKind::ALL;

/// The `kind` label of a unit kind (its name in the JSON report).
pub fn kind_label(kind: UnitKind) -> &'static str {
    match kind {
        UnitKind::Table => "table",
        UnitKind::Partition => "partition",
        UnitKind::Hypertable => "hypertable",
        UnitKind::Chunk => "chunk",
        UnitKind::CompressedChunk => "compressed_chunk",
        UnitKind::ExtensionConfig => "extension_config",
        UnitKind::LargeObjects => "large_objects",
    }
}

const UNIT_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    3600.0,
];
const BACKPRESSURE_WAIT_BUCKETS: &[f64] =
    &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Installs the Prometheus exporter, serving `http://addr/metrics` on the current Tokio
/// runtime, describes every metric and registers every series of a run over `jobs`
/// streams, so the first scrape has them all. Call once, inside the runtime, before the
/// run.
pub fn serve(addr: SocketAddr, jobs: usize) -> Result<()> {
    let cannot = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Usage,
            format!(
                "cannot serve metrics on {addr} ({e}): choose another --metrics-addr, or --metrics-addr off"
            ),
        )
    };
    let (recorder, exporter) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(UNIT_DURATION.into()), UNIT_DURATION_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(BACKPRESSURE_WAIT.into()),
                BACKPRESSURE_WAIT_BUCKETS,
            )
        })
        .and_then(|b| b.build())
        .map_err(|e| cannot(&e))?;
    metrics::set_global_recorder(recorder).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("the metrics recorder was installed twice: {e}"),
        )
    })?;
    for m in METRICS {
        match m.kind {
            MetricType::Counter => metrics::describe_counter!(m.name, m.help),
            MetricType::Gauge => metrics::describe_gauge!(m.name, m.help),
            MetricType::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge!(START_TIME).set(now);
    // The registry keeps the series; the run's Progress gets the same ones back.
    let _ = Instruments::new(jobs);
    tokio::spawn(exporter);
    Ok(())
}

/// The handles of one unit kind.
#[derive(Debug)]
pub struct KindInstruments {
    pub bytes: Counter,
    pub rows: Counter,
    pub duration: Histogram,
    pub retries: Counter,
    pub failures: Counter,
}

/// Handles registered once per run. Registering them up front also makes every series
/// exist, at zero, from the first scrape. Without an installed exporter they do nothing.
#[derive(Debug)]
pub struct Instruments {
    kinds: Vec<KindInstruments>,
    units: Vec<Gauge>,
    pub backpressure_wait: Histogram,
    pub active_streams: Gauge,
    pub estimated_bytes: Gauge,
}

impl Instruments {
    pub fn new(jobs: usize) -> Instruments {
        gauge!(STREAMS).set(jobs as f64);
        for &phase in PHASES {
            let _ = gauge!(PHASE, "phase" => phase);
            let _ = counter!(RUN_ERRORS, "phase" => phase);
        }
        Instruments {
            kinds: UNIT_KINDS
                .iter()
                .map(|&k| {
                    let kind = kind_label(k);
                    KindInstruments {
                        bytes: counter!(COPIED_BYTES, "kind" => kind),
                        rows: counter!(COPIED_ROWS, "kind" => kind),
                        duration: histogram!(UNIT_DURATION, "kind" => kind),
                        retries: counter!(UNIT_RETRIES, "kind" => kind),
                        failures: counter!(UNIT_FAILURES, "kind" => kind),
                    }
                })
                .collect(),
            units: UnitState::ALL
                .iter()
                .map(|s| gauge!(UNITS, "state" => s.label()))
                .collect(),
            backpressure_wait: histogram!(BACKPRESSURE_WAIT),
            active_streams: gauge!(ACTIVE_STREAMS),
            estimated_bytes: gauge!(ESTIMATED_BYTES),
        }
    }

    pub fn kind(&self, kind: UnitKind) -> &KindInstruments {
        let i = UNIT_KINDS.iter().position(|&k| k == kind).unwrap_or(0);
        &self.kinds[i]
    }

    /// Sets the units-by-state gauges from `counts`, indexed like [`UnitState::ALL`].
    pub fn set_units(&self, counts: &[usize]) {
        for (gauge, &n) in self.units.iter().zip(counts) {
            gauge.set(n as f64);
        }
    }

    /// Marks `phase` as current (`true`) or left (`false`).
    pub fn phase(&self, phase: &str, current: bool) {
        gauge!(PHASE, "phase" => phase.to_string()).set(if current { 1.0 } else { 0.0 });
    }

    /// The run ended with an error in `phase`.
    pub fn run_error(&self, phase: &str) {
        counter!(RUN_ERRORS, "phase" => phase.to_string()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut seen = BTreeSet::new();
        for m in METRICS {
            assert!(seen.insert(m.name), "{} is listed twice", m.name);
            assert!(m.name.starts_with("tsxfer_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == MetricType::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            if m.kind == MetricType::Histogram {
                assert!(m.name.ends_with("_seconds"), "{}", m.name);
            }
            assert!(!m.help.is_empty(), "{}", m.name);
        }
    }

    #[test]
    fn every_metric_is_documented() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/observability.md"),
        )
        .unwrap();
        for m in METRICS {
            assert!(
                doc.contains(&format!("`{}`", m.name)),
                "{} is missing from docs/observability.md",
                m.name
            );
            for label in m.labels {
                assert!(
                    doc.contains(&format!("`{label}`")),
                    "label {label} of {} is not documented",
                    m.name
                );
            }
        }
    }

    /// Every phase the code enters is one [`PHASES`] registers up front.
    #[test]
    fn every_phase_entered_is_registered() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut entered = BTreeSet::new();
        let mut dirs = vec![src];
        let mut files = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        for path in files {
            let text = std::fs::read_to_string(path).unwrap();
            for call in ["phases.enter(\"", "progress.phase(\""] {
                for piece in text.split(call).skip(1) {
                    entered.insert(piece.split('"').next().unwrap().to_string());
                }
            }
        }
        assert!(
            entered.contains("preflight") && entered.len() > 5,
            "{entered:?}"
        );
        for phase in &entered {
            assert!(
                PHASES.contains(&phase.as_str()),
                "phase {phase:?} is not in PHASES"
            );
        }
    }

    #[test]
    fn kind_labels_are_the_report_names() {
        for k in UNIT_KINDS {
            assert_eq!(serde_json::to_value(k).unwrap(), kind_label(k));
        }
    }
}
