//! Metrics, dashboard, progress and report of real runs: the endpoint scraped while the
//! binary migrates, a real Prometheus scraping it, a terminal (a pty) for the bars, and no
//! password anywhere.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tsxfer::observe::metrics::{METRICS, MetricType, PHASES};

use crate::cluster::{self, TSDBADMIN_PASSWORD};
use crate::{conninfos, load_source, tsxfer};

/// How long a test waits for a run, or for Prometheus, before it gives up.
const PATIENCE: Duration = Duration::from_secs(300);

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
}

/// `GET path` over HTTP/1.0; the body when the answer is 200.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.lines()
        .next()?
        .contains(" 200 ")
        .then(|| body.to_string())
}

/// Percent-encodes a query-string value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A child process that is killed (by its pid) if the test ends before it does.
struct Spawned {
    child: Child,
    what: &'static str,
}

impl Spawned {
    /// Sends SIGTERM and returns the exit code.
    fn terminate(&mut self) -> i32 {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for a child") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "{} ignored SIGTERM for a minute",
                self.what
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .expect("waiting for a child")
            .map(|s| s.code().unwrap_or(-1))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A run of tsxfer in the background, in its own working directory, its output in files
/// there. Nothing of the test's own SOURCE, TARGET or PG* environment leaks in.
struct Background {
    process: Spawned,
    dir: tempfile::TempDir,
    metrics: SocketAddr,
}

impl Background {
    fn start(args: &[&str]) -> Background {
        Background::start_at(args, free_addr())
    }

    /// With the metrics served on `metrics`.
    fn start_at(args: &[&str], metrics: SocketAddr) -> Background {
        let dir = tempfile::tempdir().expect("a temp dir");
        let addr = metrics.to_string();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsxfer"));
        cmd.args(args)
            .args(["--metrics-addr", &addr, "--keep-serving"])
            .current_dir(dir.path())
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| {
                !(k.starts_with("PG") || k == "SOURCE" || k == "TARGET" || k == "TSXFER_LOG")
            }))
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
        let child = cmd.spawn().expect("starting tsxfer");
        Background {
            process: Spawned {
                child,
                what: "tsxfer",
            },
            dir,
            metrics,
        }
    }

    fn output(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.output("stdout"),
            self.output("stderr")
        )
    }

    fn scrape(&self) -> Option<String> {
        http_get(self.metrics, "/metrics")
    }

    /// Scrapes until the run is over (phase done or failed); returns the first and the
    /// last scrape.
    fn scrape_until_over(&mut self) -> (String, String) {
        let deadline = Instant::now() + PATIENCE;
        let mut first = None;
        loop {
            if let Some(code) = self.process.exited() {
                panic!("tsxfer exited ({code}) while serving\n{}", self.describe());
            }
            if let Some(text) = self.scrape() {
                let over = ["done", "failed"]
                    .iter()
                    .any(|p| value(&text, &format!("tsxfer_phase{{phase=\"{p}\"}}")) == Some(1.0));
                let first = first.get_or_insert_with(|| text.clone()).clone();
                if over {
                    return (first, text);
                }
            }
            assert!(
                Instant::now() < deadline,
                "the run did not end\n{}",
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The value of one sample (`name{labels}` exactly as exposed).
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok())?
    })
}

/// The sum of every sample of metric `name`.
fn total(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| sample_name(l) == Some(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn sample_name(line: &str) -> Option<&str> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    line.split(['{', ' ']).next()
}

/// Metric names of the samples in a scrape.
fn sample_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(sample_name)
        .map(String::from)
        .collect()
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/tsxfer-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every PromQL expression the dashboard runs.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard(), &mut out);
    assert!(
        out.len() > 10,
        "the dashboard has only {} queries",
        out.len()
    );
    out
}

/// The metric names a PromQL expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tsxfer_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The flags of a migration from `source` into `target` over two streams with small
/// buffers (so even the fixtures take many), then `more`.
fn migration<'a>(source: &'a str, target: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--source",
        source,
        "--target",
        target,
        "--jobs",
        "2",
        "--buffer-size",
        "64KiB",
    ];
    args.extend(more);
    args
}

/// Polls `ready` until it holds; after a minute, panics with `what` and `context()`.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}:\n{}", context());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(TSDBADMIN_PASSWORD),
        "the target's password appears in {what}:\n{text}"
    );
}

/// Migrates a database while scraping: the endpoint answers before the data pass, every
/// metric the dashboard queries is there, the numbers agree with the report, logs are
/// JSON with a progress line, the default report lands in the working directory, and the
/// password is nowhere.
#[test]
fn a_run_serves_metrics_the_dashboard_needs_and_reports_without_secrets() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "obs_run_src", true);
    tgt.create_cloud_like_database("obs_run_tgt");
    let (source, target) = conninfos(src, "obs_run_src", tgt, "obs_run_tgt");
    let mut run = Background::start(&migration(&source, &target, &["--log-format", "json"]));
    let (first, last) = run.scrape_until_over();
    let code = run.process.terminate();
    assert_eq!(code, 0, "{}", run.describe());
    let (stdout, stderr) = (run.output("stdout"), run.output("stderr"));

    // Served from the start: the first scrape came before the run was over, and already
    // holds every counter and gauge, each phase's series included, errors at 0.
    assert_ne!(
        value(&first, "tsxfer_phase{phase=\"done\"}"),
        Some(1.0),
        "{first}"
    );
    assert_eq!(value(&first, "tsxfer_streams"), Some(2.0), "{first}");
    let first_names = sample_names(&first);
    for m in METRICS.iter().filter(|m| m.kind != MetricType::Histogram) {
        assert!(
            first_names.contains(m.name),
            "{} is missing from the first scrape:\n{first}",
            m.name
        );
    }
    for phase in PHASES {
        let errors = format!("tsxfer_run_errors_total{{phase=\"{phase}\"}}");
        assert_eq!(value(&first, &errors), Some(0.0), "{errors}: {first}");
        let gauge = format!("tsxfer_phase{{phase=\"{phase}\"}}");
        assert!(value(&first, &gauge).is_some(), "{gauge}: {first}");
    }
    for query in dashboard_queries() {
        for name in metric_names(&query) {
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.ends_with(suffix));
            assert!(
                histogram || first_names.contains(&name),
                "the dashboard queries {name} (in {query}), which the first scrape lacks"
            );
        }
    }
    assert_eq!(value(&last, "tsxfer_phase{phase=\"done\"}"), Some(1.0));
    assert_eq!(value(&last, "tsxfer_phase{phase=\"data\"}"), Some(0.0));

    // Every metric is described exactly once and has samples; the dashboard queries
    // only metrics that exist.
    let names = sample_names(&last);
    for m in METRICS {
        let help = format!("# HELP {} ", m.name);
        assert_eq!(last.matches(&help).count(), 1, "{}: {last}", m.name);
        assert!(
            names.iter().any(|n| n.starts_with(m.name)),
            "{} has no sample",
            m.name
        );
    }
    for query in dashboard_queries() {
        for name in metric_names(&query) {
            assert!(
                names.contains(&name),
                "the dashboard queries {name} (in {query}), which the scrape lacks:\n{names:?}"
            );
        }
    }

    // The report, at its default place (the state directory, not the working one),
    // agrees with the metrics.
    let reports_in = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.to_string_lossy().ends_with(".tsxfer-report.json"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(reports_in(run.dir.path()), Vec::<PathBuf>::new());
    let reports = reports_in(&run.dir.path().join("state/tsxfer"));
    assert_eq!(
        reports.len(),
        1,
        "no default report in $XDG_STATE_HOME/tsxfer"
    );
    assert!(
        stdout.contains(&format!("report: {}", reports[0].display())),
        "{stdout}"
    );
    let report_text = std::fs::read_to_string(&reports[0]).unwrap();
    let report: Value = serde_json::from_str(&report_text).unwrap();
    assert_eq!(report["success"], true);
    assert_eq!(report["unfinished"], Value::Array(vec![]));
    let units = report["units"].as_array().unwrap();
    let rows: u64 = units.iter().map(|u| u["rows"].as_u64().unwrap()).sum();
    let bytes: u64 = units.iter().map(|u| u["bytes"].as_u64().unwrap()).sum();
    assert_eq!(
        value(&last, "tsxfer_units{state=\"done\"}"),
        Some(units.len() as f64)
    );
    for state in ["pending", "running", "failed"] {
        assert_eq!(
            value(&last, &format!("tsxfer_units{{state=\"{state}\"}}")),
            Some(0.0)
        );
    }
    // A unit that was retried (a transient failure) is counted again.
    if total(&last, "tsxfer_unit_retries_total") == 0.0 {
        assert_eq!(total(&last, "tsxfer_copied_rows_total"), rows as f64);
        assert_eq!(total(&last, "tsxfer_copied_bytes_total"), bytes as f64);
    } else {
        assert!(total(&last, "tsxfer_copied_rows_total") >= rows as f64);
        assert!(total(&last, "tsxfer_copied_bytes_total") >= bytes as f64);
    }
    assert!(value(&last, "tsxfer_copied_bytes_total{kind=\"chunk\"}").unwrap() > 0.0);
    assert!(value(&last, "tsxfer_estimated_bytes").unwrap() > 0.0);
    assert_eq!(
        total(&last, "tsxfer_unit_duration_seconds_count"),
        units.len() as f64
    );
    assert!(value(&last, "tsxfer_backpressure_wait_seconds_count").unwrap() > 0.0);
    assert_eq!(value(&last, "tsxfer_active_streams"), Some(0.0));

    // Logs: JSON, one object a line, with the progress line of the data pass (stderr is
    // not a terminal here).
    let mut messages = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        messages.push(v["fields"]["message"].as_str().unwrap_or("").to_string());
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("data: ") && m.contains(" units, ")),
        "no progress line in the log:\n{stderr}"
    );
    assert!(stdout.contains("result: success"), "{stdout}");

    for (what, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("the report", &report_text),
        ("the first scrape", &first),
        ("the last scrape", &last),
    ] {
        assert_no_secret(what, text);
    }
}

/// A real Prometheus scrapes a run and answers `rate(...)` with a non-zero value; every
/// query of the dashboard is valid PromQL there.
#[test]
fn prometheus_scrapes_a_run_and_rates_it() {
    let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("prometheus is not installed: run scripts/setup.sh (it installs Debian's prometheus package)");
    let (src, tgt) = cluster::clusters();
    load_source(src, "obs_prom_src", true);
    tgt.create_cloud_like_database("obs_prom_tgt");
    let (source, target) = conninfos(src, "obs_prom_src", tgt, "obs_prom_tgt");

    // Prometheus first, scraping an endpoint that is not up yet, so it has samples from
    // before the data pass.
    let tsxfer_addr = free_addr();
    let prom_addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: tsxfer\n    static_configs:\n      - targets: ['{tsxfer_addr}']\n"
        ),
    )
    .unwrap();
    let mut prometheus = Spawned {
        child: Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("starting prometheus"),
        what: "prometheus",
    };
    let prometheus_log = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap();
    wait_for(
        "prometheus not ready",
        || {
            if let Some(code) = prometheus.exited() {
                panic!("prometheus exited ({code}):\n{}", prometheus_log());
            }
            http_get(prom_addr, "/-/ready").is_some()
        },
        prometheus_log,
    );
    let query = |q: &str| -> Value {
        let body = http_get(prom_addr, &format!("/api/v1/query?query={}", url_encode(q)))
            .unwrap_or_else(|| panic!("prometheus refused the query {q}"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{q}: {body}");
        v["data"]["result"].clone()
    };

    // Prometheus loads its targets a few seconds after it is ready: start the run once it
    // has tried to scrape the endpoint (which is down until then).
    let answers = |q: &str| query(q).as_array().is_some_and(|r| !r.is_empty());
    wait_for(
        "prometheus never tried to scrape",
        || answers("up{job=\"tsxfer\"}"),
        prometheus_log,
    );

    let mut run = Background::start_at(&migration(&source, &target, &[]), tsxfer_addr);
    run.scrape_until_over();

    // Prometheus has seen the end of the run, and the rate over it is not zero.
    wait_for(
        "prometheus never scraped the end of the run",
        || answers("tsxfer_phase{phase=\"done\"} == 1"),
        prometheus_log,
    );
    let result = query("sum(rate(tsxfer_copied_bytes_total[5m]))");
    let rate: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        rate > 0.0,
        "rate(tsxfer_copied_bytes_total[5m]) = {result}; the samples: {}",
        query("sum(tsxfer_copied_bytes_total)[5m:250ms]")
    );

    for q in dashboard_queries() {
        let q = q
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        query(&q);
    }
    let throughput = query("sum by (kind) (rate(tsxfer_copied_bytes_total[5m])) > 0");
    assert!(
        throughput
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["metric"]["kind"] == "chunk"),
        "{throughput}"
    );

    assert_eq!(run.process.terminate(), 0, "{}", run.describe());
    assert_eq!(prometheus.terminate(), 0, "{}", prometheus_log());
}

/// A run refused by preflight still serves its outcome and writes its report where asked,
/// with no password in either.
#[test]
fn a_refused_run_counts_its_error_and_writes_its_report() {
    let (src, tgt) = cluster::clusters();
    src.create_database("obs_refused_src");
    tgt.create_cloud_like_database("obs_refused_tgt");
    tgt.psql("obs_refused_tgt", "CREATE TABLE already_here (a int)");
    let (source, target) = conninfos(src, "obs_refused_src", tgt, "obs_refused_tgt");
    let mut run = Background::start(&[
        "--source",
        &source,
        "--target",
        &target,
        "--report",
        "refused.json",
    ]);
    let (_, last) = run.scrape_until_over();
    assert_eq!(run.process.terminate(), 3, "{}", run.describe());
    assert_eq!(value(&last, "tsxfer_phase{phase=\"failed\"}"), Some(1.0));
    assert_eq!(
        value(&last, "tsxfer_run_errors_total{phase=\"preflight\"}"),
        Some(1.0),
        "{last}"
    );
    assert_eq!(total(&last, "tsxfer_run_errors_total"), 1.0, "{last}");
    let report_text = std::fs::read_to_string(run.dir.path().join("refused.json")).unwrap();
    let report: Value = serde_json::from_str(&report_text).unwrap();
    assert_eq!(report["success"], false);
    assert!(
        report["error"].as_str().unwrap().contains("already_here"),
        "{report}"
    );
    // The refusal is its one line (and the line --keep-serving adds); stdout is empty.
    let stderr = run.output("stderr");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("still serving"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("tsxfer: "), "{stderr}");
    assert_eq!(run.output("stdout"), "", "{}", run.describe());
    for (what, text) in [
        ("stderr", &stderr),
        ("stdout", &run.output("stdout")),
        ("the report", &report_text),
        ("the scrape", &last),
    ] {
        assert_no_secret(what, text);
    }
}

/// A metrics address that is taken stops the run before it connects to anything.
#[test]
fn a_taken_metrics_address_is_refused_before_anything_is_done() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = tsxfer(&[
        "--source",
        "host=127.0.0.1 port=1 user=u dbname=d",
        "--target",
        "host=127.0.0.1 port=1 user=u dbname=d",
        "--metrics-addr",
        &addr,
        "--report",
        "/nonexistent/never-written.json",
    ]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot serve metrics on {addr}")),
        "{run:?}"
    );
    assert!(!run.stderr.contains("cannot connect"), "{run:?}");
}

/// `--quiet`: no progress and no informational log, only warnings and errors; the summary
/// still goes to stdout.
#[test]
fn quiet_prints_only_the_summary() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "obs_quiet_src", false);
    tgt.create_cloud_like_database("obs_quiet_tgt");
    tgt.psql("obs_quiet_tgt", "DROP EXTENSION timescaledb");
    let (source, target) = conninfos(src, "obs_quiet_src", tgt, "obs_quiet_tgt");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("quiet.json");
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--quiet",
        "--metrics-addr",
        "off",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .lines()
            .all(|l| l.contains("WARN") || l.contains("ERROR")),
        "{run:?}"
    );
    assert!(run.stdout.contains("result: success"), "{run:?}");
    assert!(report.exists());
}

/// A table of a few rows is estimated at what its rows are wide, also when a column has no
/// statistics (as a compressed chunk's compressed columns have none): not at a page, and
/// not at the other columns alone (the estimate was a quarter of the bytes copied then).
#[test]
fn a_few_row_table_is_estimated_near_what_its_copy_carries() {
    let (src, tgt) = cluster::clusters();
    src.create_database("obs_estimate_src");
    src.psql(
        "obs_estimate_src",
        "CREATE TABLE few (id int, note text);
         ALTER TABLE few ALTER COLUMN note SET STATISTICS 0;
         INSERT INTO few SELECT i, repeat('x', 40) FROM generate_series(1, 5) i;
         ANALYZE few;",
    );
    tgt.create_cloud_like_database("obs_estimate_tgt");
    tgt.psql("obs_estimate_tgt", "DROP EXTENSION timescaledb");
    let (source, target) = conninfos(src, "obs_estimate_src", tgt, "obs_estimate_tgt");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("estimate.json");
    let run = tsxfer(&[
        "--source",
        &source,
        "--target",
        &target,
        "--metrics-addr",
        "off",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let unit = report["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["relation"] == "\"public\".\"few\"")
        .unwrap_or_else(|| panic!("no unit for few: {report}"));
    let (estimated, copied) = (
        unit["estimated_bytes"].as_f64().unwrap(),
        unit["bytes"].as_f64().unwrap(),
    );
    assert!(
        (0.5 * copied..=2.0 * copied).contains(&estimated),
        "estimated {estimated} B for {copied} B copied"
    );
}

/// On a terminal, the bars: the overall line with units and rate, and a line per active
/// stream naming what it copies. `script` gives the run a pty.
#[test]
fn a_terminal_gets_progress_bars() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "obs_tty_src", true);
    tgt.create_cloud_like_database("obs_tty_tgt");
    // Enough rows that the data pass outlasts a few redraws.
    src.psql(
        "obs_tty_src",
        "CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) AS a, md5((g * 7)::text) AS b
         FROM generate_series(1, 1500000) g",
    );
    let (source, target) = conninfos(src, "obs_tty_src", tgt, "obs_tty_tgt");
    let dir = tempfile::tempdir().unwrap();
    let typescript = dir.path().join("typescript");
    let command = format!(
        "exec {} --jobs 2 --buffer-size 64KiB --metrics-addr off --report {}",
        env!("CARGO_BIN_EXE_tsxfer"),
        dir.path().join("tty.json").display()
    );
    let status = Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(&typescript)
        .env("SOURCE", &source)
        .env("TARGET", &target)
        .env("TERM", "xterm")
        .env("COLUMNS", "160")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running script(1)");
    let screen = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).to_string();
    assert!(status.success(), "{status}:\n{screen}");
    assert!(screen.contains("result: success"), "{screen}");
    assert!(screen.contains(" units, "), "no overall bar:\n{screen}");
    assert!(
        screen.contains("stream 1: table \"public\".\"bulk\"")
            || screen.contains("stream 2: table \"public\".\"bulk\""),
        "no stream line for public.bulk:\n{screen}"
    );
    assert_no_secret("the terminal", &screen);
}

/// `tsxfer dump` serves the same metrics as a migration: units by state, bytes and rows
/// by kind, its phases; with --keep-serving the last values stay until SIGTERM.
#[test]
fn a_dump_serves_metrics_from_start_to_end() {
    let (src, tgt) = cluster::clusters();
    load_source(src, "obs_dump_src", true);
    let (source, _) = conninfos(src, "obs_dump_src", tgt, "unused");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dump");
    let mut run = Background::start(&[
        "dump",
        "--source",
        &source,
        "--dir",
        out.to_str().unwrap(),
        "--jobs",
        "2",
        "--buffer-size",
        "64KiB",
    ]);
    let (first, last) = run.scrape_until_over();
    let code = run.process.terminate();
    assert_eq!(code, 0, "{}", run.describe());
    assert_ne!(
        value(&first, "tsxfer_phase{phase=\"done\"}"),
        Some(1.0),
        "{first}"
    );
    assert_eq!(value(&last, "tsxfer_phase{phase=\"done\"}"), Some(1.0));
    assert_eq!(value(&last, "tsxfer_streams"), Some(2.0), "{last}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(
        value(&last, "tsxfer_units{state=\"done\"}"),
        Some(files.len() as f64),
        "{last}"
    );
    let rows: u64 = files.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
    let bytes: u64 = files
        .iter()
        .map(|f| f["stream_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(total(&last, "tsxfer_copied_rows_total"), rows as f64);
    assert_eq!(total(&last, "tsxfer_copied_bytes_total"), bytes as f64);
    assert!(value(&last, "tsxfer_copied_bytes_total{kind=\"chunk\"}").unwrap() > 0.0);
    assert!(
        run.output("stderr").contains("metrics on http://"),
        "{}",
        run.describe()
    );
}
