//! What a run tells the world while it runs. The phases call these hooks; what they feed
//! (log lines now) lives here, so the migration code does not care who is watching.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::info;

use crate::copy::UnitOutcome;
use crate::plan::{CopyUnit, UnitKind, human_bytes};

#[derive(Debug, Default)]
struct State {
    phase: String,
    total_units: usize,
    total_bytes: i64,
    done_units: usize,
    failed_units: usize,
    bytes: u64,
    rows: u64,
    blocked_seconds: f64,
    retries: u64,
    /// What each stream is copying now (relation), by stream number.
    streams: Vec<Option<String>>,
}

/// Shared by every task of one run.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    state: Mutex<State>,
}

impl Progress {
    pub fn new(jobs: usize) -> Progress {
        Progress {
            started: Instant::now(),
            state: Mutex::new(State {
                streams: vec![None; jobs],
                ..State::default()
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A new phase begins (preflight, roles, schema, data, post-data, verify, ...).
    pub fn phase(&self, name: &str) {
        info!("phase: {name}");
        self.with(|s| s.phase = name.to_string());
    }

    /// The units of the data pass are known.
    pub fn planned(&self, units: &[CopyUnit]) {
        self.with(|s| {
            s.total_units = units.len();
            s.total_bytes = units.iter().map(|u| u.estimated_bytes).sum();
        });
    }

    /// Stream `stream` starts copying `unit`.
    pub fn unit_started(&self, stream: usize, unit: &CopyUnit) {
        self.with(|s| {
            if let Some(slot) = s.streams.get_mut(stream) {
                *slot = Some(unit.relation());
            }
        });
    }

    /// Bytes and rows that stream `stream` has just handed to the target.
    pub fn unit_progress(&self, _stream: usize, _kind: UnitKind, bytes: u64, rows: u64) {
        self.with(|s| {
            s.bytes += bytes;
            s.rows += rows;
        });
    }

    /// Time a stream waited for the target to take its buffer.
    pub fn blocked(&self, seconds: f64) {
        self.with(|s| s.blocked_seconds += seconds);
    }

    pub fn unit_finished(&self, stream: usize, unit: &CopyUnit, outcome: &UnitOutcome) {
        info!(
            "copied {} {}: {} rows, {} in {:.1}s",
            unit.kind.label(),
            unit.relation(),
            outcome.rows,
            human_bytes(outcome.bytes as i64),
            outcome.seconds
        );
        self.with(|s| {
            s.done_units += 1;
            if let Some(slot) = s.streams.get_mut(stream) {
                *slot = None;
            }
        });
    }

    /// A unit failed; `will_retry` says whether it goes back to the queue.
    pub fn unit_failed(&self, stream: usize, _unit: &CopyUnit, will_retry: bool) {
        self.with(|s| {
            if will_retry {
                s.retries += 1;
            } else {
                s.failed_units += 1;
            }
            if let Some(slot) = s.streams.get_mut(stream) {
                *slot = None;
            }
        });
    }

    /// One line saying where the data pass stands.
    pub fn status_line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        self.with(|s| {
            let active = s.streams.iter().filter(|x| x.is_some()).count();
            format!(
                "{}: {}/{} units, {} of about {}, {}/s, {active} active streams{}",
                s.phase,
                s.done_units,
                s.total_units,
                human_bytes(s.bytes as i64),
                human_bytes(s.total_bytes),
                human_bytes((s.bytes as f64 / secs) as i64),
                if s.retries > 0 {
                    format!(", {} retries", s.retries)
                } else {
                    String::new()
                }
            )
        })
    }
}

/// Logs [`Progress::status_line`] every `every` while the data pass runs, until the
/// returned task is aborted.
pub fn report_periodically(
    progress: Arc<Progress>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if progress.with(|s| s.phase == "data") {
                info!("{}", progress.status_line());
            }
        }
    })
}
