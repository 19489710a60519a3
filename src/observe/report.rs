//! The run report: what was copied, how fast, what was rewritten, what did not match.
//! Printed as a table for people and written as JSON for machines.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::copy::UnitOutcome;
use crate::copy::checksum::Checksum;
use crate::error::Result;
use crate::observe::metrics::UNIT_KINDS;
use crate::observe::progress::{UnitState, UnitStatus};
use crate::plan::{CopyUnit, UnitKind, human_bytes};

#[derive(Debug, Clone, Serialize)]
pub struct UnitReport {
    pub relation: String,
    pub kind: UnitKind,
    pub format: &'static str,
    pub estimated_bytes: i64,
    #[serde(flatten)]
    pub outcome: UnitOutcome,
    /// Rows found on the target by the verify pass.
    pub target_rows: Option<i64>,
    /// The checksum of the rows read back from the target (`--verify=checksum`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_checksum: Option<Checksum>,
    /// For a table copied in parts: how many of its parts this line adds up (rows, bytes
    /// and seconds are theirs together).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<u32>,
}

impl UnitReport {
    pub fn new(unit: &CopyUnit, outcome: UnitOutcome) -> UnitReport {
        UnitReport {
            relation: unit.relation(),
            kind: unit.kind,
            format: if unit.binary { "binary" } else { "text" },
            estimated_bytes: unit.estimated_bytes,
            outcome,
            target_rows: None,
            target_checksum: None,
            parts: unit.pages.map(|_| 1),
        }
    }

    /// Done units as the report lists them: a table copied in parts once, with its
    /// parts' rows, bytes and seconds added up. Each comes with a unit of its table (for
    /// counting its rows on the target).
    pub fn by_table(done: Vec<(CopyUnit, UnitOutcome)>) -> Vec<(CopyUnit, UnitReport)> {
        let mut out: Vec<(CopyUnit, UnitReport)> = Vec::with_capacity(done.len());
        let mut tables: HashMap<(UnitKind, u32), usize> = HashMap::new();
        for (unit, outcome) in done {
            if unit.pages.is_some() {
                if let Some(&i) = tables.get(&(unit.kind, unit.oid)) {
                    let r = &mut out[i].1;
                    r.estimated_bytes += unit.estimated_bytes;
                    r.outcome.rows += outcome.rows;
                    r.outcome.bytes += outcome.bytes;
                    r.outcome.seconds += outcome.seconds;
                    r.outcome.blocked_seconds += outcome.blocked_seconds;
                    r.outcome.checksum = r
                        .outcome
                        .checksum
                        .zip(outcome.checksum)
                        .map(|(a, b)| a.plus(b));
                    r.parts = r.parts.map(|n| n + 1);
                    continue;
                }
                tables.insert((unit.kind, unit.oid), out.len());
            }
            let report = UnitReport::new(&unit, outcome);
            out.push((unit, report));
        }
        out
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub source: String,
    pub target: String,
    pub jobs: usize,
    pub snapshot: Option<String>,
    pub success: bool,
    pub error: Option<String>,
    /// How a successful run's units were checked against the source: none under
    /// `--verify off`.
    pub verified_by: Option<String>,
    pub phases: Vec<PhaseTime>,
    /// Units that were copied.
    pub units: Vec<UnitReport>,
    /// Planned units that were not copied: failed, in flight when the run stopped, or
    /// never started.
    pub unfinished: Vec<UnitStatus>,
    pub roles_created: Vec<String>,
    pub roles_existing: Vec<String>,
    pub roles_needing_password: Vec<String>,
    pub rewrites: Vec<String>,
    pub warnings: Vec<String>,
    pub mismatches: Vec<String>,
    pub seconds: f64,
    /// Seconds this process's streams spent in the data pass analyzing tables right
    /// after their copy (added up over the streams).
    pub data_analyze_seconds: f64,
}

impl Report {
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| {
            crate::error::Error::new(crate::error::ErrorKind::Internal, e.to_string())
        })?;
        std::fs::write(path, text)?;
        Ok(())
    }

    /// The human summary: units by kind, totals and throughput, then every rewrite,
    /// warning and mismatch.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\ntsxfer: {} -> {}", self.source, self.target);
        let _ = writeln!(
            s,
            "{:<18} {:>7} {:>14} {:>11} {:>10}",
            "kind", "units", "rows", "bytes", "seconds"
        );
        let (mut rows, mut bytes) = (0u64, 0u64);
        for kind in UNIT_KINDS {
            let of_kind: Vec<&UnitReport> = self.units.iter().filter(|u| u.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            let r: u64 = of_kind.iter().map(|u| u.outcome.rows).sum();
            let b: u64 = of_kind.iter().map(|u| u.outcome.bytes).sum();
            let secs: f64 = of_kind.iter().map(|u| u.outcome.seconds).sum();
            rows += r;
            bytes += b;
            let _ = writeln!(
                s,
                "{:<18} {:>7} {:>14} {:>11} {:>10.1}",
                kind.label(),
                of_kind.len(),
                r,
                human_bytes(b as i64),
                secs
            );
        }
        let _ = writeln!(
            s,
            "{:<18} {:>7} {:>14} {:>11}",
            "total",
            self.units.len(),
            rows,
            human_bytes(bytes as i64)
        );
        let data_secs = self
            .phases
            .iter()
            .find(|p| p.phase == "data")
            .map(|p| p.seconds)
            .unwrap_or(0.0);
        if data_secs > 0.0 {
            let _ = write!(
                s,
                "data pass: {:.1} s at {}/s over {} streams",
                data_secs,
                human_bytes((bytes as f64 / data_secs) as i64),
                self.jobs
            );
            if self.data_analyze_seconds >= 0.05 {
                let _ = write!(
                    s,
                    " ({:.1} stream-seconds of it analyzing tables as they were copied)",
                    self.data_analyze_seconds
                );
            }
            let _ = writeln!(s);
        }
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|p| format!("{} {:.1}s", p.phase, p.seconds))
            .collect();
        let _ = writeln!(s, "phases: {}", phases.join(", "));
        let _ = writeln!(s, "total time: {:.1} s", self.seconds);
        if !self.roles_created.is_empty() {
            let _ = writeln!(s, "roles created: {}", self.roles_created.join(", "));
        }
        if !self.roles_existing.is_empty() {
            let _ = writeln!(
                s,
                "roles already on the target, left as they were but for their settings in this database: {}",
                self.roles_existing.join(", ")
            );
        }
        if !self.roles_needing_password.is_empty() {
            let _ = writeln!(
                s,
                "login roles created without a password (set one with ALTER ROLE ... PASSWORD): {}",
                self.roles_needing_password.join(", ")
            );
        }
        if !self.unfinished.is_empty() {
            let count = |state| self.unfinished.iter().filter(|u| u.state == state).count();
            let _ = writeln!(
                s,
                "units not copied: {} failed, {} stopped while copying, {} not started (the JSON report lists them)",
                count(UnitState::Failed),
                count(UnitState::Running),
                count(UnitState::Pending)
            );
            for u in self
                .unfinished
                .iter()
                .filter(|u| u.state == UnitState::Failed)
            {
                let _ = writeln!(s, "  - failed: {} {}", u.kind.label(), u.relation);
            }
        }
        for (title, items) in [
            ("rewrites", &self.rewrites),
            ("warnings", &self.warnings),
            ("MISMATCHES", &self.mismatches),
        ] {
            if !items.is_empty() {
                let _ = writeln!(s, "{title} ({}):", items.len());
                for i in items {
                    let _ = writeln!(s, "  - {i}");
                }
            }
        }
        match (&self.error, self.success) {
            (_, true) => {
                let _ = match &self.verified_by {
                    Some(how) => writeln!(s, "result: success, every unit verified by {how}"),
                    None => writeln!(s, "result: success, not verified (--verify off)"),
                };
            }
            (Some(e), false) => {
                let _ = writeln!(s, "result: FAILED: {e}");
            }
            (None, false) => {
                let _ = writeln!(s, "result: FAILED");
            }
        }
        s
    }
}

/// (year, month, day, hour, minute, second) of `now` in UTC.
pub fn utc_fields(now: SystemTime) -> (i64, i64, i64, i64, i64, i64) {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let t = secs.rem_euclid(86_400);
    (year, month, day, t / 3600, t % 3600 / 60, t % 60)
}
