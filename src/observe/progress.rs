//! What a run tells the world while it runs. The phases call the hooks of [`Progress`];
//! it feeds the Prometheus metrics (`crate::observe::metrics`), the terminal ([`Screen`]: bars on a
//! TTY, a status line every so often otherwise) and the report's list of units that did
//! not finish, so the migration code does not care who is watching.
//!
//! One file because the hooks, the screen and the counters share one state that every
//! stream updates.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use tracing::info;

use crate::copy::{Observer, UnitOutcome};
use crate::observe::metrics::Instruments;
use crate::plan::{CopyUnit, UnitKind, human_bytes};

/// Where a data unit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    Pending,
    Running,
    Done,
    Failed,
}

impl UnitState {
    pub const ALL: [UnitState; 4] = [
        UnitState::Pending,
        UnitState::Running,
        UnitState::Done,
        UnitState::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UnitState::Pending => "pending",
            UnitState::Running => "running",
            UnitState::Done => "done",
            UnitState::Failed => "failed",
        }
    }
}

/// A planned unit and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct UnitStatus {
    pub relation: String,
    pub kind: UnitKind,
    pub state: UnitState,
}

#[derive(Debug)]
struct Stream {
    relation: String,
    kind: UnitKind,
    started: Instant,
}

#[derive(Debug)]
struct State {
    phase: String,
    data_started: Option<Instant>,
    /// How long the data pass took, once it is over.
    data_seconds: Option<f64>,
    /// Seconds the streams spent analyzing tables after their copy.
    analyze_seconds: f64,
    total_bytes: i64,
    units: Vec<UnitStatus>,
    /// Position in `units` by relation.
    index: HashMap<String, usize>,
    /// Units by state, indexed like [`UnitState::ALL`].
    counts: [usize; 4],
    retries: u64,
    /// What each stream is copying now, by stream number.
    streams: Vec<Option<Stream>>,
}

impl State {
    fn transition(&mut self, unit: &CopyUnit, to: UnitState) {
        let from = match self.index.get(&unit.title()) {
            Some(&i) => std::mem::replace(&mut self.units[i].state, to),
            None => UnitState::Pending,
        };
        let count = &mut self.counts[from as usize];
        *count = count.saturating_sub(1);
        self.counts[to as usize] += 1;
    }

    fn active_streams(&self) -> usize {
        self.streams.iter().filter(|s| s.is_some()).count()
    }
}

/// Shared by every task of one run. The per-buffer hooks touch only atomics.
#[derive(Debug)]
pub struct Progress {
    bytes: AtomicU64,
    rows: AtomicU64,
    /// Bytes of the unit each stream copies now.
    stream_bytes: Vec<AtomicU64>,
    state: Mutex<State>,
    instruments: Instruments,
}

impl Progress {
    /// Registers the run's metrics: create it after [`crate::observe::metrics::serve`].
    pub fn new(jobs: usize) -> Progress {
        Progress {
            bytes: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            stream_bytes: (0..jobs).map(|_| AtomicU64::new(0)).collect(),
            state: Mutex::new(State {
                phase: String::new(),
                data_started: None,
                data_seconds: None,
                analyze_seconds: 0.0,
                total_bytes: 0,
                units: Vec::new(),
                index: HashMap::new(),
                counts: [0; 4],
                retries: 0,
                streams: (0..jobs).map(|_| None).collect(),
            }),
            instruments: Instruments::new(jobs),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A new phase begins (preflight, roles, schema, data, post-data, verify, ...).
    pub fn phase(&self, name: &str) {
        info!("phase: {name}");
        let left = self.with(|s| {
            let left = std::mem::replace(&mut s.phase, name.to_string());
            if name == "data" {
                s.data_started = Some(Instant::now());
            } else if left == "data" {
                s.data_seconds = s.data_started.map(|t| t.elapsed().as_secs_f64());
            }
            left
        });
        if left == "data" {
            info!("{}", self.status_line_of("data"));
        }
        if !left.is_empty() {
            self.instruments.phase(&left, false);
        }
        self.instruments.phase(name, true);
    }

    /// The units of the data pass are known.
    pub fn planned(&self, units: &[CopyUnit]) {
        let total_bytes: i64 = units.iter().map(|u| u.estimated_bytes).sum();
        self.instruments.estimated_bytes.set(total_bytes as f64);
        let counts = self.with(|s| {
            s.total_bytes = total_bytes;
            s.units = units
                .iter()
                .map(|u| UnitStatus {
                    relation: u.title(),
                    kind: u.kind,
                    state: UnitState::Pending,
                })
                .collect();
            s.index = s
                .units
                .iter()
                .enumerate()
                .map(|(i, u)| (u.relation.clone(), i))
                .collect();
            s.counts = [units.len(), 0, 0, 0];
            s.counts
        });
        self.instruments.set_units(&counts);
    }

    /// Units of the plan that an earlier run already copied (a resumed run): they count as
    /// done, and their size leaves the estimate of what this run has to copy.
    pub fn already_done(&self, units: &[CopyUnit]) {
        let (counts, total_bytes) = self.with(|s| {
            for unit in units {
                s.transition(unit, UnitState::Done);
                s.total_bytes -= unit.estimated_bytes;
            }
            (s.counts, s.total_bytes)
        });
        self.instruments.set_units(&counts);
        self.instruments.estimated_bytes.set(total_bytes as f64);
    }

    /// Stream `stream` starts copying `unit`.
    pub fn unit_started(&self, stream: usize, unit: &CopyUnit) {
        if let Some(b) = self.stream_bytes.get(stream) {
            b.store(0, Ordering::Relaxed);
        }
        let (counts, active) = self.with(|s| {
            s.transition(unit, UnitState::Running);
            if let Some(slot) = s.streams.get_mut(stream) {
                *slot = Some(Stream {
                    relation: unit.title(),
                    kind: unit.kind,
                    started: Instant::now(),
                });
            }
            (s.counts, s.active_streams())
        });
        self.instruments.set_units(&counts);
        self.instruments.active_streams.set(active as f64);
    }

    /// Bytes and rows that stream `stream` has just handed to the target.
    pub fn unit_progress(&self, stream: usize, kind: UnitKind, bytes: u64, rows: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        if let Some(b) = self.stream_bytes.get(stream) {
            b.fetch_add(bytes, Ordering::Relaxed);
        }
        let k = self.instruments.kind(kind);
        k.bytes.increment(bytes);
        k.rows.increment(rows);
    }

    /// A stream analyzed the table it had just copied, in `seconds`.
    pub fn analyzed(&self, seconds: f64) {
        self.with(|s| s.analyze_seconds += seconds);
    }

    /// Seconds the streams of this process spent analyzing tables after their copy.
    pub fn analyze_seconds(&self) -> f64 {
        self.with(|s| s.analyze_seconds)
    }

    /// Time a stream waited for the target to take its buffer.
    pub fn blocked(&self, seconds: f64) {
        self.instruments.backpressure_wait.record(seconds);
    }

    pub fn unit_finished(&self, stream: usize, unit: &CopyUnit, outcome: &UnitOutcome) {
        info!(
            "copied {} {}: {} rows, {} in {:.1}s",
            unit.kind.label(),
            unit.title(),
            outcome.rows,
            human_bytes(outcome.bytes as i64),
            outcome.seconds
        );
        self.instruments
            .kind(unit.kind)
            .duration
            .record(outcome.seconds);
        self.unit_left(stream, unit, UnitState::Done);
    }

    /// A unit failed; `will_retry` says whether it goes back to the queue.
    pub fn unit_failed(&self, stream: usize, unit: &CopyUnit, will_retry: bool) {
        let k = self.instruments.kind(unit.kind);
        if will_retry {
            k.retries.increment(1);
            self.with(|s| s.retries += 1);
            self.unit_left(stream, unit, UnitState::Pending);
        } else {
            k.failures.increment(1);
            self.unit_left(stream, unit, UnitState::Failed);
        }
    }

    /// `unit` was copied but its transaction, shared with a unit that failed, rolled
    /// back: it is pending again, and no retry of its own.
    pub fn unit_rolled_back(&self, stream: usize, unit: &CopyUnit) {
        self.unit_left(stream, unit, UnitState::Pending);
    }

    /// Stream `stream` is done with `unit`, which is now in state `to`.
    fn unit_left(&self, stream: usize, unit: &CopyUnit, to: UnitState) {
        let (counts, active) = self.with(|s| {
            s.transition(unit, to);
            if let Some(slot) = s.streams.get_mut(stream) {
                *slot = None;
            }
            (s.counts, s.active_streams())
        });
        self.instruments.set_units(&counts);
        self.instruments.active_streams.set(active as f64);
    }

    /// The run is over: the phase becomes "done" or "failed", and a failure is counted
    /// against the phase it ended.
    pub fn ended(&self, success: bool) {
        let last = self.with(|s| s.phase.clone());
        if !success {
            self.instruments.run_error(&last);
        }
        self.phase(if success { "done" } else { "failed" });
    }

    /// The planned units that did not finish, for the report.
    pub fn unfinished_units(&self) -> Vec<UnitStatus> {
        self.with(|s| {
            s.units
                .iter()
                .filter(|u| u.state != UnitState::Done)
                .cloned()
                .collect()
        })
    }

    /// Where the run stands now.
    pub fn snapshot(&self) -> Snapshot {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let rows = self.rows.load(Ordering::Relaxed);
        self.with(|s| Snapshot {
            phase: s.phase.clone(),
            data_seconds: s
                .data_seconds
                .or(s.data_started.map(|t| t.elapsed().as_secs_f64()))
                .unwrap_or(0.0),
            bytes,
            rows,
            total_bytes: s.total_bytes.max(0) as u64,
            total_units: s.units.len(),
            done_units: s.counts[UnitState::Done as usize],
            failed_units: s.counts[UnitState::Failed as usize],
            retries: s.retries,
            streams: s
                .streams
                .iter()
                .zip(&self.stream_bytes)
                .map(|(slot, b)| {
                    slot.as_ref().map(|st| StreamSnapshot {
                        relation: st.relation.clone(),
                        kind: st.kind,
                        bytes: b.load(Ordering::Relaxed),
                        seconds: st.started.elapsed().as_secs_f64(),
                    })
                })
                .collect(),
        })
    }

    /// One line saying where the data pass stands.
    pub fn status_line(&self) -> String {
        self.snapshot().status_line()
    }

    fn status_line_of(&self, phase: &str) -> String {
        let mut s = self.snapshot();
        s.phase = phase.to_string();
        s.status_line()
    }
}

/// What one stream is copying, at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSnapshot {
    pub relation: String,
    pub kind: UnitKind,
    pub bytes: u64,
    pub seconds: f64,
}

impl StreamSnapshot {
    fn line(&self, stream: usize) -> String {
        format!(
            "stream {stream}: {} {}, {} at {}/s",
            self.kind.label(),
            self.relation,
            human_bytes(self.bytes as i64),
            human_bytes(per_second(self.bytes, self.seconds) as i64)
        )
    }
}

/// Where the run stands, at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub phase: String,
    /// Seconds spent in the data pass so far.
    pub data_seconds: f64,
    pub bytes: u64,
    pub rows: u64,
    /// Estimated from the source's relation sizes.
    pub total_bytes: u64,
    pub total_units: usize,
    pub done_units: usize,
    pub failed_units: usize,
    pub retries: u64,
    pub streams: Vec<Option<StreamSnapshot>>,
}

fn per_second(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

/// "42s", "3m05s", "2h03m".
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Snapshot {
    /// Average data-pass throughput, in bytes per second.
    pub fn rate(&self) -> f64 {
        per_second(self.bytes, self.data_seconds)
    }

    /// Time left at the average rate, while the estimate has not been reached.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0 && self.bytes < self.total_bytes)
            .then(|| Duration::from_secs_f64((self.total_bytes - self.bytes) as f64 / rate))
    }

    fn active_streams(&self) -> usize {
        self.streams.iter().filter(|s| s.is_some()).count()
    }

    /// Units, rate, ETA, retries and failures: what both the bar and the log line show.
    fn counts(&self) -> String {
        let mut text = format!(
            "{}/{} units, {}/s",
            self.done_units,
            self.total_units,
            human_bytes(self.rate() as i64)
        );
        if let Some(eta) = self.eta() {
            text.push_str(&format!(", ETA {}", human_duration(eta)));
        }
        match self.retries {
            0 => {}
            1 => text.push_str(", 1 retry"),
            n => text.push_str(&format!(", {n} retries")),
        }
        if self.failed_units > 0 {
            text.push_str(&format!(", {} failed", self.failed_units));
        }
        text
    }

    /// One line saying where the data pass stands. Past the estimate, the estimate is
    /// named as such rather than as a total already exceeded.
    pub fn status_line(&self) -> String {
        let (done, estimate) = (
            human_bytes(self.bytes as i64),
            human_bytes(self.total_bytes as i64),
        );
        let bytes = if self.bytes > self.total_bytes {
            format!("{done} (estimated {estimate})")
        } else {
            format!("{done} of about {estimate}")
        };
        format!(
            "{}: {bytes}, {} rows, {}, {} active streams",
            self.phase,
            self.rows,
            self.counts(),
            self.active_streams()
        )
    }
}

/// The terminal: progress bars on a TTY, a status line every `LINE_EVERY` otherwise, or
/// nothing with `--quiet`. Log lines go through [`Screen::log_writer`] so they print above
/// the bars instead of through them.
///
/// A screen made with `hold` keeps the log lines of a run's preflight back (up to
/// `HOLD_AT_MOST`): a run refused there then shows only its one error line
/// ([`Screen::discard`]), while a run that goes on shows them ([`Screen::release`]).
#[derive(Debug, Clone)]
pub struct Screen {
    bars: Option<MultiProgress>,
    lines: bool,
    held: Held,
}

/// Log lines kept back while `Some`.
type Held = Arc<Mutex<Option<Vec<u8>>>>;

const LINE_EVERY: Duration = Duration::from_secs(10);
const BAR_EVERY: Duration = Duration::from_millis(200);
const HOLD_AT_MOST: Duration = Duration::from_secs(5);
const HOLD_POLL: Duration = Duration::from_millis(50);

impl Screen {
    /// `interactive`: stderr is a terminal. `hold`: keep log lines back until the run is
    /// past its preflight.
    pub fn new(quiet: bool, interactive: bool, hold: bool) -> Screen {
        Screen {
            bars: (!quiet && interactive).then(MultiProgress::new),
            lines: !quiet && !interactive,
            held: Arc::new(Mutex::new(hold.then(Vec::new))),
        }
    }

    /// What the log subscriber writes to: stderr, around the bars.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter {
            bars: self.bars.clone(),
            held: self.held.clone(),
        }
    }

    /// Writes the log lines kept back, and every later one straight away.
    pub fn release(&self) {
        // Written under the lock, so no later line overtakes them.
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(text) = held.take() {
            let _ = to_stderr(self.bars.as_ref(), &text);
        }
    }

    /// Drops the log lines kept back; later ones are written straight away.
    pub fn discard(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Releases the held lines once `progress` is past its preflight, or after
    /// `HOLD_AT_MOST`, so a slow preflight is not silent.
    fn release_after_preflight(
        &self,
        progress: Arc<Progress>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            return None;
        }
        let screen = self.clone();
        Some(tokio::spawn(async move {
            let started = Instant::now();
            loop {
                let phase = progress.with(|s| s.phase.clone());
                let waiting = matches!(phase.as_str(), "" | "preflight" | "failed");
                if !waiting || started.elapsed() >= HOLD_AT_MOST {
                    screen.release();
                    return;
                }
                tokio::time::sleep(HOLD_POLL).await;
            }
        }))
    }

    /// Shows `progress` until [`Watch::stop`].
    pub fn watch(&self, progress: Arc<Progress>) -> Watch {
        let release = self.release_after_preflight(progress.clone());
        let mut watch = self.show(progress);
        watch.release = release;
        watch
    }

    fn show(&self, progress: Arc<Progress>) -> Watch {
        if let Some(multi) = &self.bars {
            let bars = Arc::new(Bars::new(multi.clone(), progress.stream_bytes.len()));
            let drawing = bars.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(BAR_EVERY);
                loop {
                    tick.tick().await;
                    drawing.draw(&progress.snapshot());
                }
            });
            Watch {
                task: Some(task),
                bars: Some(bars),
                release: None,
            }
        } else if self.lines {
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(LINE_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let now = progress.snapshot();
                    if now.phase == "data" {
                        info!("{}", now.status_line());
                    }
                }
            });
            Watch {
                task: Some(task),
                bars: None,
                release: None,
            }
        } else {
            Watch {
                task: None,
                bars: None,
                release: None,
            }
        }
    }
}

/// Showing progress; [`Watch::stop`] ends it and clears the bars.
#[derive(Debug)]
pub struct Watch {
    task: Option<tokio::task::JoinHandle<()>>,
    bars: Option<Arc<Bars>>,
    release: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    pub fn stop(self) {
        for task in [self.task, self.release].into_iter().flatten() {
            task.abort();
        }
        if let Some(bars) = self.bars {
            bars.clear();
        }
    }
}

/// Writes log lines to stderr, hiding the bars while it does, or keeps them back while
/// the screen holds them.
#[derive(Debug, Clone)]
pub struct LogWriter {
    bars: Option<MultiProgress>,
    held: Held,
}

fn to_stderr(bars: Option<&MultiProgress>, buf: &[u8]) -> io::Result<usize> {
    match bars {
        Some(multi) => multi.suspend(|| io::stderr().write_all(buf).map(|()| buf.len())),
        None => io::stderr().write_all(buf).map(|()| buf.len()),
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(held) = self.held.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            held.extend_from_slice(buf);
            return Ok(buf.len());
        }
        to_stderr(self.bars.as_ref(), buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// The overall bar and one line per active stream.
#[derive(Debug)]
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    streams: Mutex<Vec<Option<ProgressBar>>>,
}

impl Bars {
    fn new(multi: MultiProgress, jobs: usize) -> Bars {
        let overall = multi.add(
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template("{spinner} {prefix} [{elapsed_precise}] {msg}")
                    .expect("a valid template"),
            ),
        );
        Bars {
            multi,
            overall,
            streams: Mutex::new((0..jobs).map(|_| None).collect()),
        }
    }

    fn draw(&self, now: &Snapshot) {
        self.overall.set_prefix(now.phase.clone());
        if now.total_units > 0 && self.overall.length() == Some(0) {
            self.overall.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
        }
        if now.total_units > 0 {
            self.overall
                .set_length(now.total_bytes.max(now.bytes).max(1));
            self.overall.set_position(now.bytes);
            self.overall.set_message(now.counts());
        } else {
            self.overall.set_message(String::new());
        }
        self.overall.tick();
        let mut bars = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for (n, stream) in now.streams.iter().enumerate() {
            match (stream, &bars[n]) {
                (Some(st), Some(bar)) => bar.set_message(st.line(n + 1)),
                (Some(st), None) => {
                    let above = bars[..n].iter().filter(|b| b.is_some()).count();
                    let bar = self.multi.insert(
                        1 + above,
                        ProgressBar::new_spinner().with_style(
                            ProgressStyle::with_template("  {msg}").expect("a valid template"),
                        ),
                    );
                    bar.set_message(st.line(n + 1));
                    bars[n] = Some(bar);
                }
                (None, Some(bar)) => {
                    bar.finish_and_clear();
                    self.multi.remove(bar);
                    bars[n] = None;
                }
                (None, None) => {}
            }
        }
    }

    fn clear(&self) {
        let mut bars = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        for bar in bars.iter_mut().filter_map(Option::take) {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Observer for Progress {
    fn started(&self, stream: usize, unit: &CopyUnit) {
        self.unit_started(stream, unit);
    }

    fn moved(&self, stream: usize, kind: UnitKind, bytes: u64, rows: u64) {
        self.unit_progress(stream, kind, bytes, rows);
    }

    fn blocked(&self, seconds: f64) {
        Progress::blocked(self, seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            phase: "data".into(),
            data_seconds: 10.0,
            bytes: 100 << 20,
            rows: 1234,
            total_bytes: 300 << 20,
            total_units: 40,
            done_units: 12,
            failed_units: 0,
            retries: 1,
            streams: vec![
                Some(StreamSnapshot {
                    relation: "public.t".into(),
                    kind: UnitKind::Table,
                    bytes: 8 << 20,
                    seconds: 2.0,
                }),
                None,
            ],
        }
    }

    #[test]
    fn status_line_says_rate_eta_and_streams() {
        assert_eq!(
            snapshot().status_line(),
            "data: 100.0 MiB of about 300.0 MiB, 1234 rows, 12/40 units, 10.0 MiB/s, ETA 20s, 1 retry, 1 active streams"
        );
        assert_eq!(
            snapshot().streams[0].as_ref().unwrap().line(1),
            "stream 1: table public.t, 8.0 MiB at 4.0 MiB/s"
        );
    }

    #[test]
    fn past_the_estimate_the_line_says_it_was_one() {
        let mut s = snapshot();
        s.bytes = 400 << 20;
        assert!(
            s.status_line()
                .starts_with("data: 400.0 MiB (estimated 300.0 MiB), 1234 rows, 12/40 units"),
            "{}",
            s.status_line()
        );
    }

    #[test]
    fn no_eta_before_data_or_past_the_estimate() {
        let mut s = snapshot();
        s.data_seconds = 0.0;
        assert_eq!(s.eta(), None);
        let mut s = snapshot();
        s.bytes = s.total_bytes + 1;
        assert_eq!(s.eta(), None);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(7380)), "2h03m");
    }

    #[test]
    fn units_move_between_states() {
        let p = Progress::new(2);
        let a = CopyUnit::table(1, "public".into(), "a".into(), UnitKind::Table);
        let b = CopyUnit::table(2, "public".into(), "b".into(), UnitKind::Chunk);
        p.planned(&[a.clone(), b.clone()]);
        p.unit_started(0, &a);
        p.unit_started(1, &b);
        p.unit_progress(0, UnitKind::Table, 100, 3);
        let now = p.snapshot();
        assert_eq!(now.streams.iter().flatten().count(), 2);
        assert_eq!(now.streams[0].as_ref().unwrap().bytes, 100);
        p.unit_failed(1, &b, true);
        p.unit_finished(
            0,
            &a,
            &UnitOutcome {
                rows: 3,
                bytes: 100,
                seconds: 0.1,
                ..Default::default()
            },
        );
        let now = p.snapshot();
        assert_eq!((now.done_units, now.retries, now.rows), (1, 1, 3));
        assert_eq!(now.streams.iter().flatten().count(), 0);
        let left = p.unfinished_units();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].relation, b.title());
        assert_eq!(left[0].state, UnitState::Pending);
    }

    #[test]
    fn parts_of_one_table_are_units_of_their_own() {
        let p = Progress::new(2);
        let mut whole = CopyUnit::table(1, "public".into(), "big".into(), UnitKind::Table);
        whole.estimated_bytes = 20;
        let parts = crate::plan::split_units(vec![whole], 10, &HashMap::from([(1, 10)]));
        assert_eq!(parts.len(), 2);
        p.planned(&parts);
        p.unit_started(0, &parts[0]);
        p.unit_started(1, &parts[1]);
        p.unit_finished(0, &parts[0], &UnitOutcome::default());
        let now = p.snapshot();
        assert_eq!((now.done_units, now.total_units), (1, 2));
        let left = p.unfinished_units();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].relation, "\"public\".\"big\" (part 2 of 2)");
        p.analyzed(0.25);
        p.analyzed(0.5);
        assert_eq!(p.analyze_seconds(), 0.75);
    }

    #[test]
    fn a_resumed_run_counts_earlier_units_as_done() {
        let p = Progress::new(1);
        let mut a = CopyUnit::table(1, "public".into(), "a".into(), UnitKind::Table);
        let mut b = CopyUnit::table(2, "public".into(), "b".into(), UnitKind::Table);
        a.estimated_bytes = 100;
        b.estimated_bytes = 50;
        p.planned(&[a.clone(), b.clone()]);
        p.already_done(std::slice::from_ref(&a));
        let now = p.snapshot();
        assert_eq!(
            (now.done_units, now.total_units, now.total_bytes),
            (1, 2, 50)
        );
        assert_eq!(p.unfinished_units().len(), 1);
    }
}
