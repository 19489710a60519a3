//! Command-line flags. Parsing here does no I/O; `into_options` validates and builds what
//! the library runs.
//!
//! One file because every subcommand shares the argument groups declared here (streams,
//! selection, output, resume), and each group's validation sits next to its flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, ErrorKind, Result};
use crate::pg::conninfo::ConnInfo;
use crate::run::verify::VerifyMode;
use crate::run::{LoadOptions, MigrateOptions};

/// What `--version` says: the version, the git revision it was built from, and the
/// server versions the test suite ran against.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("TSXFER_GIT_REVISION"),
    "), tested with PostgreSQL 15 and TimescaleDB 2.19.3"
);

#[derive(Debug, Parser)]
#[command(
    name = "tsxfer",
    version = VERSION,
    about = "Migrate a whole PostgreSQL or TimescaleDB database to another server over parallel COPY streams",
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    after_help = "Exit codes: 0 success, 1 internal error, 2 bad usage, 3 refused by preflight \
                  (nothing changed), 4 migration failed, 5 verification mismatch, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub migrate: MigrateArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Read options from this TOML file (see config/tsxfer.example.toml); flags and
    /// SOURCE/TARGET given on the command line or in the environment win over it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the source database into the target (the default).
    Migrate(MigrateArgs),
    /// Print what a migration would do (checks, roles, units in order); change nothing.
    Plan(PlanArgs),
    /// Join the migration running into the target (from another host, say) and copy units
    /// with it until none is left.
    Worker(WorkerArgs),
    /// Print the progress of the run recorded in the target.
    Status(TargetArgs),
    /// Drop the run state (schema tsxfer) from the target; the copied data stays.
    Clean(TargetArgs),
    /// Write the migration into a directory instead of a target: a manifest, the roles,
    /// the schema, and one zstd-compressed file per unit (resumable).
    Dump(DumpArgs),
    /// Load a directory written by `tsxfer dump` into the target: the same phases and
    /// checks as a migration, reading the files.
    Restore(RestoreArgs),
    /// Print a shell completion script (e.g. `tsxfer completions bash > /etc/bash_completion.d/tsxfer`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), e.g. `tsxfer man > tsxfer.1`.
    Man,
    /// Compare the rows of a source and a target by content, table by table, chunk by
    /// chunk and hypertable by hypertable, each read in one snapshot; write nothing.
    Verify(CompareArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Source database: a libpq URI or key=value string (PG* variables and .pgpass apply).
    #[arg(long, env = "SOURCE", hide_env_values = true)]
    pub source: Option<String>,

    /// Target database, as a libpq URI or key=value string.
    #[arg(long, env = "TARGET", hide_env_values = true)]
    pub target: Option<String>,

    /// Tables read at once on each side.
    #[arg(short = 'j', long, default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

impl CompareArgs {
    pub fn into_options(self) -> Result<crate::run::verify::CompareOptions> {
        let source = self
            .source
            .ok_or_else(|| usage("no source given: use --source or set SOURCE"))?;
        let target = self
            .target
            .ok_or_else(|| usage("no target given: use --target or set TARGET"))?;
        if self.jobs == 0 {
            return Err(usage("--jobs must be at least 1"));
        }
        Ok(crate::run::verify::CompareOptions {
            source: ConnInfo::parse(&source, "source")?,
            target: ConnInfo::parse(&target, "target")?,
            jobs: self.jobs,
            filters: self.filters.into_filters(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    /// Source database: a libpq URI or key=value string (PG* variables and .pgpass apply).
    #[arg(long, env = "SOURCE", hide_env_values = true)]
    pub source: Option<String>,

    /// Directory to write the dump into: made if missing; it must be empty or hold an
    /// unfinished dump of the same source.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub streams: StreamArgs,

    /// zstd compression level of the unit files: 1 (fastest, and smallest on random
    /// text) to 19 (smallest on most data, slowest); negative levels are faster still and
    /// compress less.
    #[arg(long, default_value_t = crate::dump::DEFAULT_COMPRESS_LEVEL, allow_negative_numbers = true)]
    pub compress_level: i32,

    #[command(flatten)]
    pub select: SelectArgs,

    #[command(flatten)]
    pub retry: RetryArgs,

    /// Remove the dump already in --dir (finished or not) and start over.
    #[arg(long)]
    pub restart: bool,

    /// Finish an interrupted dump although its snapshot is gone: units written before and
    /// after then come from two different moments of the source.
    #[arg(long)]
    pub allow_inconsistent: bool,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// Directory written by `tsxfer dump`.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Target database, empty, as a libpq URI or key=value string.
    #[arg(long, env = "TARGET", hide_env_values = true)]
    pub target: Option<String>,

    #[command(flatten)]
    pub streams: StreamArgs,

    /// Directory for restore lists (a private subdirectory is made and removed).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,

    #[command(flatten)]
    pub retry: RetryArgs,

    /// Remove what an earlier, unfinished restore left in the target and start over.
    #[arg(long)]
    pub restart: bool,

    /// Keep the run state (schema tsxfer) in the target after a verified run.
    #[arg(long)]
    pub keep_state: bool,

    #[command(flatten)]
    pub verify: VerifyArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// How many streams, with how much buffer each.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Parallel COPY streams (when loading a target, also the pg_restore jobs that build
    /// indexes and constraints).
    #[arg(short = 'j', long, default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,

    /// Bytes buffered per stream before they are handed on (e.g. 256KiB, 1MiB).
    #[arg(long, default_value = "256KiB")]
    pub buffer_size: String,

    /// Directory holding pg_dump and pg_restore (default: the source's version under
    /// /usr/lib/postgresql, else PATH).
    #[arg(long)]
    pub pg_bin_dir: Option<PathBuf>,
}

impl StreamArgs {
    /// (jobs, buffer size in bytes), checked.
    pub fn validate(&self) -> Result<(usize, usize)> {
        if self.jobs == 0 {
            return Err(usage("--jobs must be at least 1"));
        }
        let buffer_size = parse_size(&self.buffer_size)
            .filter(|&b| b >= 8192)
            .ok_or_else(|| {
                usage(format!(
                    "--buffer-size {} is not a size of at least 8KiB (e.g. 256KiB, 1MiB)",
                    self.buffer_size
                ))
            })?;
        Ok((self.jobs, buffer_size))
    }
}

impl DumpArgs {
    pub fn into_options(self) -> Result<crate::run::dump::DumpOptions> {
        let source = self
            .source
            .ok_or_else(|| usage("no source given: use --source or set SOURCE"))?;
        let (jobs, buffer_size) = self.streams.validate()?;
        if !(-7..=22).contains(&self.compress_level) || self.compress_level == 0 {
            return Err(usage(format!(
                "--compress-level {} is not a zstd level (1 to 22, or -7 to -1 for faster and larger)",
                self.compress_level
            )));
        }
        if self.restart && self.allow_inconsistent {
            return Err(usage(
                "--restart starts over; --allow-inconsistent finishes the earlier dump: give one of them",
            ));
        }
        let (hypertables, filters, split_bytes) = self.select.parse()?;
        Ok(crate::run::dump::DumpOptions {
            source: ConnInfo::parse(&source, "source")?,
            dir: self.dir,
            jobs,
            buffer_size,
            pg_bin_dir: self.streams.pg_bin_dir,
            retries: self.retry.retries,
            compress_level: self.compress_level,
            restart: self.restart,
            allow_inconsistent: self.allow_inconsistent,
            hypertables,
            filters,
            split_bytes,
        })
    }
}

impl RestoreArgs {
    pub fn into_options(self) -> Result<crate::run::RestoreOptions> {
        let target = self
            .target
            .ok_or_else(|| usage("no target given: use --target or set TARGET"))?;
        let (jobs, buffer_size) = self.streams.validate()?;
        Ok(crate::run::RestoreOptions {
            dir: self.dir,
            load: LoadOptions {
                target: ConnInfo::parse(&target, "target")?,
                jobs,
                buffer_size,
                work_dir: self.work_dir,
                pg_bin_dir: self.streams.pg_bin_dir,
                retries: self.retry.retries,
                restart: self.restart,
                keep_state: self.keep_state,
                verify: self.verify.verify,
            },
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub transfer: TransferArgs,

    #[command(flatten)]
    pub select: SelectArgs,

    /// Print what the migration would do, like `tsxfer plan`, and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub resume: ResumeArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub transfer: TransferArgs,

    #[command(flatten)]
    pub select: SelectArgs,
}

/// Which schemas and tables, pg_dump's way: a migration, a dump and `tsxfer verify` take
/// the same filters.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only schemas matching PATTERN (as pg_dump reads patterns; repeatable).
    #[arg(short = 'n', long = "schema", value_name = "PATTERN")]
    pub schemas: Vec<String>,

    /// Leave out schemas matching PATTERN (repeatable).
    #[arg(short = 'N', long = "exclude-schema", value_name = "PATTERN")]
    pub exclude_schemas: Vec<String>,

    /// Only tables matching PATTERN (repeatable; a hypertable brings its chunks).
    #[arg(short = 't', long = "table", value_name = "PATTERN")]
    pub tables: Vec<String>,

    /// Leave out tables matching PATTERN (repeatable).
    #[arg(short = 'T', long = "exclude-table", value_name = "PATTERN")]
    pub exclude_tables: Vec<String>,

    /// Leave out the rows of tables matching PATTERN (a migration still creates the
    /// tables; repeatable).
    #[arg(long = "exclude-table-data", value_name = "PATTERN")]
    pub exclude_table_data: Vec<String>,
}

impl FilterArgs {
    pub fn into_filters(self) -> crate::source::filter::Filters {
        crate::source::filter::Filters {
            schemas: self.schemas,
            exclude_schemas: self.exclude_schemas,
            tables: self.tables,
            exclude_tables: self.exclude_tables,
            exclude_table_data: self.exclude_table_data,
        }
    }
}

/// What to migrate of the source, and what to make of it.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    #[command(flatten)]
    pub filters: FilterArgs,

    /// Make a plain table of the source a hypertable on the target before its data
    /// arrives: schema.table:time_column[:chunk_interval] (repeatable; plain PostgreSQL
    /// sources).
    #[arg(long = "hypertable", value_name = "SPEC")]
    pub hypertables: Vec<String>,

    /// Copy a plain table or partition bigger than SIZE, and than its share of the data
    /// (all units' size over --jobs), in parts of about SIZE each (ranges of its pages),
    /// so that several streams share it; 0 copies every table whole. Parts are loaded
    /// without FREEZE. Needs PostgreSQL 14 or later on the source.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub split_tables_larger_than: String,
}

/// What [`SelectArgs`] asks for, checked: hypertable requests, filters, and the size
/// above which a table is copied in parts.
type Selected = (
    Vec<crate::source::convert::HypertableSpec>,
    crate::source::filter::Filters,
    i64,
);

impl SelectArgs {
    /// The hypertable requests, the filters and the split size, checked.
    pub fn parse(self) -> Result<Selected> {
        let split_bytes = parse_size(&self.split_tables_larger_than)
            .and_then(|b| i64::try_from(b).ok())
            .ok_or_else(|| {
            usage(format!(
                "--split-tables-larger-than {} is not a size (e.g. 1GiB, 512MiB, or 0 for never)",
                self.split_tables_larger_than
            ))
        })?;
        let hypertables = self
            .hypertables
            .iter()
            .map(|s| crate::source::convert::parse_spec(s))
            .collect::<Result<_>>()?;
        Ok((hypertables, self.filters.into_filters(), split_bytes))
    }
}

/// Long flags a config file may set: the migrate command's, and the global ones.
const CONFIG_KEYS: &[&str] = &[
    "source",
    "target",
    "jobs",
    "buffer-size",
    "work-dir",
    "pg-bin-dir",
    "schema",
    "exclude-schema",
    "table",
    "exclude-table",
    "exclude-table-data",
    "hypertable",
    "split-tables-larger-than",
    "retries",
    "keep-state",
    "verify",
    "report",
    "metrics-addr",
    "keep-serving",
    "log-format",
    "quiet",
];

/// Expands `--config FILE` in `args` into the flags the file sets, placed before the
/// command line's own so that those win (flags given twice: the last counts; repeatable
/// flags add up). A key whose environment variable is set (SOURCE, TARGET) is skipped:
/// the environment wins over the file too.
pub fn expand_config(
    args: Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let mut path = None;
    for (i, a) in args.iter().enumerate() {
        if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_string());
        } else if a == "--config" {
            path = args.get(i + 1).cloned();
        }
    }
    let Some(path) = path else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| usage(format!("cannot read the config file {path}: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| usage(format!("the config file {path} is not valid TOML: {e}")))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        if !CONFIG_KEYS.contains(&flag.as_str()) {
            return Err(usage(format!(
                "the config file {path} sets {key}, which is not an option tsxfer knows"
            )));
        }
        if env(&flag.to_ascii_uppercase()).is_some() && (flag == "source" || flag == "target") {
            continue;
        }
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        for v in values {
            match v {
                toml::Value::Boolean(true) => flags.push(format!("--{flag}")),
                toml::Value::Boolean(false) => {}
                toml::Value::String(s) => flags.push(format!("--{flag}={s}")),
                toml::Value::Integer(n) => flags.push(format!("--{flag}={n}")),
                _ => {
                    return Err(usage(format!(
                        "the config file {path}: {key} must be a string, a number, a boolean or a list of strings"
                    )));
                }
            }
        }
    }
    let at = match args.get(1).map(String::as_str) {
        Some("migrate" | "plan" | "worker") => 2,
        Some(other @ ("dump" | "restore" | "status" | "clean" | "verify")) => {
            return Err(usage(format!(
                "--config applies to migrate, plan and worker, not to {other}"
            )));
        }
        _ => 1,
    };
    let mut out = args;
    let tail = out.split_off(at.min(out.len()));
    out.extend(flags);
    out.extend(tail);
    Ok(out)
}

/// `--retries`, for every command that copies units.
#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// Times a unit is tried again after a transient failure (dropped connection, server
    /// restart, serialization failure, too many connections), with growing pauses.
    #[arg(long, default_value_t = DEFAULT_RETRIES)]
    pub retries: u32,
}

/// `--verify`, for the commands that load a target.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// What to check once the data is copied: `checksum` reads every unit back from the
    /// target and compares its rows' checksum (and count) with the rows that passed
    /// through tsxfer; `count` (the default: see README's Verification) compares row
    /// counts only; `off` checks nothing.
    #[arg(long, value_enum, default_value_t)]
    pub verify: VerifyMode,
}

/// Streams when `--jobs` is not given.
pub const DEFAULT_JOBS: usize = 4;
/// Retries of a unit when `--retries` is not given.
pub const DEFAULT_RETRIES: u32 = 5;

/// How a run survives failures and interruptions.
#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub retry: RetryArgs,

    /// Remove what an earlier, unfinished run left in the target (its objects, large
    /// objects and run state; roles stay) and start over.
    #[arg(long)]
    pub restart: bool,

    /// Resume an interrupted run although its snapshot is gone: units copied before and
    /// after then come from two different moments of the source.
    #[arg(long)]
    pub allow_inconsistent: bool,

    /// Keep the run state (schema tsxfer) in the target after a verified run.
    #[arg(long)]
    pub keep_state: bool,

    #[command(flatten)]
    pub verify: VerifyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub transfer: TransferArgs,

    #[command(flatten)]
    pub retry: RetryArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Target database (libpq URI or key=value string).
    #[arg(long, env = "TARGET", hide_env_values = true)]
    pub target: Option<String>,
}

impl TargetArgs {
    pub fn into_conninfo(self) -> Result<ConnInfo> {
        let target = self
            .target
            .ok_or_else(|| usage("no target given: use --target or set TARGET"))?;
        ConnInfo::parse(&target, "target")
    }
}

impl ResumeArgs {
    fn check(&self) -> Result<()> {
        if self.restart && self.allow_inconsistent {
            return Err(usage(
                "--restart starts over; --allow-inconsistent resumes: give one of them",
            ));
        }
        Ok(())
    }
}

impl MigrateArgs {
    /// The migration asked for, checked, built once from its flag groups.
    pub fn into_options(self) -> Result<MigrateOptions> {
        self.resume.check()?;
        let r = self.resume;
        self.transfer.into_options(
            self.select.parse()?,
            r.retry.retries,
            RunChoices {
                restart: r.restart,
                allow_inconsistent: r.allow_inconsistent,
                keep_state: r.keep_state,
                verify: r.verify.verify,
            },
        )
    }
}

impl PlanArgs {
    /// What `tsxfer plan` (or `--dry-run`) describes: a migration that neither retries
    /// (it asks once) nor starts.
    pub fn into_options(self) -> Result<MigrateOptions> {
        self.transfer
            .into_options(self.select.parse()?, 0, RunChoices::default())
    }
}

impl WorkerArgs {
    /// A worker copies the units of a run another process set up: it takes no filters of
    /// its own (the run state has the units) and does not verify.
    pub fn into_options(self) -> Result<MigrateOptions> {
        self.transfer.into_options(
            (Vec::new(), Default::default(), 0),
            self.retry.retries,
            RunChoices::default(),
        )
    }
}

/// What a run that loads the target does besides copying: the choices of [`ResumeArgs`],
/// or none of them (a plan, a worker).
#[derive(Debug, Default)]
struct RunChoices {
    restart: bool,
    allow_inconsistent: bool,
    keep_state: bool,
    verify: VerifyMode,
}

/// What to migrate, and with how many streams.
#[derive(Debug, Clone, Args)]
pub struct TransferArgs {
    /// Source database: a libpq URI or key=value string (PG* variables and .pgpass apply).
    #[arg(long, env = "SOURCE", hide_env_values = true)]
    pub source: Option<String>,

    /// Target database, empty, as a libpq URI or key=value string.
    #[arg(long, env = "TARGET", hide_env_values = true)]
    pub target: Option<String>,

    #[command(flatten)]
    pub streams: StreamArgs,

    /// Directory for the schema archives (a private subdirectory is made and removed).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// What a migration tells the world besides its log: the report, the metrics.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Write the run report as JSON to this file [default: <UTC start time>.tsxfer-report.json
    /// in $XDG_STATE_HOME/tsxfer, else ~/.local/state/tsxfer]. A run refused before it
    /// started writes one only when this is given.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The Prometheus endpoint of a command that copies.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics on http://ADDR/metrics from the start of the run (ADDR is
    /// IP:PORT, e.g. 0.0.0.0:9184 for every interface), or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9184")]
    pub metrics_addr: String,

    /// After the run, keep serving metrics until Ctrl-C or SIGTERM, so the last values can
    /// be scraped. The exit code is still the run's.
    #[arg(long)]
    pub keep_serving: bool,
}

/// [`MetricsArgs`], validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub addr: Option<SocketAddr>,
    pub keep_serving: bool,
}

impl MetricsArgs {
    pub fn validate(self) -> Result<Metrics> {
        let addr = match self.metrics_addr.trim() {
            "off" => None,
            addr => Some(addr.parse::<SocketAddr>().map_err(|_| {
                usage(format!(
                    "--metrics-addr {addr} is not IP:PORT (e.g. 127.0.0.1:9184) or off"
                ))
            })?),
        };
        if self.keep_serving && addr.is_none() {
            return Err(usage(
                "--keep-serving keeps the metrics endpoint up, but --metrics-addr is off",
            ));
        }
        Ok(Metrics {
            addr,
            keep_serving: self.keep_serving,
        })
    }
}

/// [`OutputArgs`], validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub report: PathBuf,
    /// Whether `--report` named the file (else it is the default one).
    pub report_given: bool,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Also print the log lines of a run refused before it started (by default such a
    /// refusal is one `tsxfer:` line).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// Parses sizes like `65536`, `256KiB`, `1MiB`, `4MB`.
pub fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn usage(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Usage, msg)
}

/// `<UTC time>.tsxfer-report.json`, e.g. `20231114T221320Z.tsxfer-report.json`.
pub fn default_report_path(now: SystemTime) -> PathBuf {
    let (year, month, day, h, m, s) = crate::observe::report::utc_fields(now);
    PathBuf::from(format!(
        "{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z.tsxfer-report.json"
    ))
}

/// Where reports go by default: `$XDG_STATE_HOME/tsxfer` (an absolute path, as the XDG
/// spec wants), else `$HOME/.local/state/tsxfer`, else the working directory.
pub fn default_report_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let set = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(state) = set("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
        return state.join("tsxfer");
    }
    match set("HOME") {
        Some(home) => home.join(".local/state/tsxfer"),
        None => PathBuf::from("."),
    }
}

impl OutputArgs {
    /// `now` names the default report file, in [`default_report_dir`] of `env`.
    pub fn validate(self, now: SystemTime, env: &dyn Fn(&str) -> Option<String>) -> Result<Output> {
        Ok(Output {
            metrics: self.metrics.validate()?,
            report_given: self.report.is_some(),
            report: self
                .report
                .unwrap_or_else(|| default_report_dir(env).join(default_report_path(now))),
        })
    }
}

impl TransferArgs {
    fn into_options(
        self,
        (hypertables, filters, split_bytes): Selected,
        retries: u32,
        run: RunChoices,
    ) -> Result<MigrateOptions> {
        let source = self
            .source
            .ok_or_else(|| usage("no source given: use --source or set SOURCE"))?;
        let target = self
            .target
            .ok_or_else(|| usage("no target given: use --target or set TARGET"))?;
        let (jobs, buffer_size) = self.streams.validate()?;
        let source = ConnInfo::parse(&source, "source")?;
        let target = ConnInfo::parse(&target, "target")?;
        Ok(MigrateOptions {
            source,
            load: LoadOptions {
                target,
                jobs,
                buffer_size,
                work_dir: self.work_dir,
                pg_bin_dir: self.streams.pg_bin_dir,
                retries,
                restart: run.restart,
                keep_state: run.keep_state,
                verify: run.verify,
            },
            allow_inconsistent: run.allow_inconsistent,
            hypertables,
            filters,
            split_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("256KiB"), Some(256 * 1024));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("2 mb"), Some(2 << 20));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5 parsecs"), None);
    }

    #[test]
    fn migrate_is_the_default_subcommand() {
        let cli = Cli::try_parse_from([
            "tsxfer", "--source", "host=a", "--target", "host=b", "-j", "8",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.migrate.transfer.streams.jobs, 8);
        let cli =
            Cli::try_parse_from(["tsxfer", "plan", "--source", "host=a", "--target", "host=b"])
                .unwrap();
        assert!(matches!(cli.command, Some(Command::Plan(_))));
    }

    #[test]
    fn a_config_file_comes_before_the_command_line_and_under_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "source = \"host=file\"\ntarget = \"host=file-target\"\njobs = 3\nkeep_state = true\nquiet = false\ntable = [\"a.*\", \"b\"]\n",
        )
        .unwrap();
        let argv = |extra: &[&str]| {
            let mut v = vec![
                "tsxfer".to_string(),
                "--config".into(),
                path.display().to_string(),
            ];
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        let env_target = |k: &str| (k == "TARGET").then(|| "host=env".to_string());
        let args = expand_config(argv(&["--jobs", "8"]), &env_target).unwrap();
        let cli = Cli::try_parse_from(&args).unwrap();
        assert_eq!(
            cli.migrate.transfer.streams.jobs, 8,
            "the flag wins over the file"
        );
        assert_eq!(cli.migrate.transfer.source.as_deref(), Some("host=file"));
        assert!(
            !args.iter().any(|a| a.contains("file-target")),
            "the environment wins"
        );
        assert!(cli.migrate.resume.keep_state);
        assert_eq!(cli.migrate.select.filters.tables, ["a.*", "b"]);
        let args = expand_config(
            vec![
                "tsxfer".into(),
                "plan".into(),
                format!("--config={}", path.display()),
            ],
            &|_| None,
        )
        .unwrap();
        assert_eq!(args[1], "plan");
        std::fs::write(&path, "frobnicate = 1\n").unwrap();
        let e = expand_config(argv(&[]), &|_| None).unwrap_err();
        assert!(e.to_string().contains("frobnicate"), "{e}");
        std::fs::write(&path, "jobs = [\n").unwrap();
        assert_eq!(
            expand_config(argv(&[]), &|_| None).unwrap_err().kind(),
            ErrorKind::Usage
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tsxfer.example.toml");
        let args = expand_config(
            vec!["tsxfer".into(), "--config".into(), path.into()],
            &|_| None,
        )
        .unwrap();
        Cli::try_parse_from(&args).unwrap();
    }

    #[test]
    fn zero_jobs_is_refused() {
        let args = TransferArgs {
            source: Some("host=/tmp user=u".into()),
            target: Some("host=/tmp user=u".into()),
            streams: StreamArgs {
                jobs: 0,
                buffer_size: "1MiB".into(),
                pg_bin_dir: None,
            },
            work_dir: None,
        };
        let plan = PlanArgs {
            transfer: args,
            select: SelectArgs::default(),
        };
        assert_eq!(plan.into_options().unwrap_err().kind(), ErrorKind::Usage);
    }

    /// Each command's options are built once from its flags: the defaults are the flags'
    /// own, and nothing is patched in afterwards.
    #[test]
    fn options_come_whole_from_the_flags() {
        let parse = |argv: &[&str]| Cli::try_parse_from(argv).unwrap();
        let cli = parse(&[
            "tsxfer",
            "--source",
            "host=/tmp user=u",
            "--target",
            "host=/tmp user=v",
        ]);
        let opts = cli.migrate.into_options().unwrap();
        assert_eq!(opts.load.retries, DEFAULT_RETRIES);
        assert_eq!(opts.load.jobs, DEFAULT_JOBS);
        assert_eq!(opts.load.verify, VerifyMode::Count);
        assert!(!opts.load.restart && !opts.load.keep_state && !opts.allow_inconsistent);
        let cli = parse(&[
            "tsxfer",
            "--source",
            "host=/tmp user=u",
            "--target",
            "host=/tmp user=v",
            "--retries",
            "2",
            "--verify",
            "checksum",
            "--keep-state",
            "-t",
            "x",
            "--jobs",
            "3",
        ]);
        let opts = cli.migrate.into_options().unwrap();
        assert_eq!((opts.load.retries, opts.load.jobs), (2, 3));
        assert_eq!(opts.load.verify, VerifyMode::Checksum);
        assert!(opts.load.keep_state);
        assert_eq!(opts.filters.tables, ["x"]);
        let cli = parse(&[
            "tsxfer",
            "worker",
            "--source",
            "host=/tmp user=u",
            "--target",
            "host=/tmp user=v",
            "--retries",
            "7",
        ]);
        let Some(Command::Worker(w)) = cli.command else {
            panic!("not a worker: {cli:?}")
        };
        assert_eq!(w.into_options().unwrap().load.retries, 7);
        let cli = parse(&[
            "tsxfer",
            "--source",
            "host=/tmp user=u",
            "--target",
            "host=/tmp user=v",
            "--restart",
            "--allow-inconsistent",
        ]);
        assert_eq!(
            cli.migrate.into_options().unwrap_err().kind(),
            ErrorKind::Usage
        );
    }

    fn output(flags: &[&str]) -> Result<Output> {
        let mut argv = vec!["tsxfer", "--source", "host=a", "--target", "host=b"];
        argv.extend(flags);
        let cli = Cli::try_parse_from(argv).unwrap();
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        cli.migrate.output.validate(
            UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            &env,
        )
    }

    #[test]
    fn metrics_report_and_keep_serving_flags() {
        assert_eq!(
            output(&[]).unwrap(),
            Output {
                report: PathBuf::from(
                    "/home/u/.local/state/tsxfer/20231114T221320Z.tsxfer-report.json"
                ),
                report_given: false,
                metrics: Metrics {
                    addr: Some("127.0.0.1:9184".parse().unwrap()),
                    keep_serving: false,
                },
            }
        );
        let o = output(&["--metrics-addr", "[::1]:9000", "--keep-serving"]).unwrap();
        assert_eq!(o.metrics.addr, Some("[::1]:9000".parse().unwrap()));
        assert!(o.metrics.keep_serving);
        let o = output(&["--metrics-addr", "off", "--report", "r.json"]).unwrap();
        assert_eq!((o.metrics.addr, o.report), (None, PathBuf::from("r.json")));
        assert!(o.report_given);
        for bad in [
            &["--metrics-addr", "localhost"][..],
            &["--metrics-addr", "off", "--keep-serving"],
        ] {
            assert_eq!(output(bad).unwrap_err().kind(), ErrorKind::Usage, "{bad:?}");
        }
    }

    #[test]
    fn report_names_sort_by_time() {
        assert_eq!(
            default_report_path(UNIX_EPOCH),
            PathBuf::from("19700101T000000Z.tsxfer-report.json")
        );
        assert_eq!(
            default_report_path(UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)),
            PathBuf::from("20000229T000000Z.tsxfer-report.json")
        );
    }

    #[test]
    fn reports_go_to_the_state_directory() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            default_report_dir(&env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            PathBuf::from("/s/tsxfer")
        );
        assert_eq!(
            default_report_dir(&env(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")])),
            PathBuf::from("/h/.local/state/tsxfer")
        );
        assert_eq!(
            default_report_dir(&env(&[("XDG_STATE_HOME", "")])),
            PathBuf::from(".")
        );
    }

    #[test]
    fn plan_takes_no_report_or_metrics_flags() {
        assert!(
            Cli::try_parse_from([
                "tsxfer", "plan", "--source", "a", "--target", "b", "--report", "x"
            ])
            .is_err()
        );
    }
}
