//! Command-line flags. Parsing here does no I/O; `into_options` validates and builds what
//! the library runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::conninfo::ConnInfo;
use crate::error::{Error, ErrorKind, Result};
use crate::migrate::MigrateOptions;

#[derive(Debug, Parser)]
#[command(
    name = "tsxfer",
    version,
    about = "Migrate a whole PostgreSQL or TimescaleDB database to another server over parallel COPY streams",
    args_conflicts_with_subcommands = true,
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the source database into the target (the default).
    Migrate(MigrateArgs),
    /// Print what a migration would do (checks, roles, units in order); change nothing.
    Plan(MigrateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Source database: a libpq URI or key=value string (PG* variables and .pgpass apply).
    #[arg(long, env = "SOURCE", hide_env_values = true)]
    pub source: Option<String>,

    /// Target database, empty, as a libpq URI or key=value string.
    #[arg(long, env = "TARGET", hide_env_values = true)]
    pub target: Option<String>,

    /// Parallel COPY streams (and pg_restore jobs for indexes and constraints).
    #[arg(short = 'j', long, default_value_t = 4)]
    pub jobs: usize,

    /// Bytes buffered per stream before they are handed to the target (e.g. 256KiB, 1MiB).
    #[arg(long, default_value = "1MiB")]
    pub buffer_size: String,

    /// Directory for the schema archives (a private subdirectory is made and removed).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,

    /// Directory holding pg_dump and pg_restore (default: the source's version under
    /// /usr/lib/postgresql, else PATH).
    #[arg(long)]
    pub pg_bin_dir: Option<PathBuf>,

    /// Also write the run report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
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

impl MigrateArgs {
    pub fn into_options(self) -> Result<MigrateOptions> {
        let source = self
            .source
            .ok_or_else(|| usage("no source given: use --source or set SOURCE"))?;
        let target = self
            .target
            .ok_or_else(|| usage("no target given: use --target or set TARGET"))?;
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
        let source = ConnInfo::parse(&source, "source")?;
        let target = ConnInfo::parse(&target, "target")?;
        Ok(MigrateOptions {
            source,
            target,
            jobs: self.jobs,
            buffer_size,
            work_dir: self.work_dir,
            pg_bin_dir: self.pg_bin_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(cli.migrate.jobs, 8);
        let cli =
            Cli::try_parse_from(["tsxfer", "plan", "--source", "host=a", "--target", "host=b"])
                .unwrap();
        assert!(matches!(cli.command, Some(Command::Plan(_))));
    }

    #[test]
    fn zero_jobs_is_refused() {
        let args = MigrateArgs {
            source: Some("host=/tmp user=u".into()),
            target: Some("host=/tmp user=u".into()),
            jobs: 0,
            buffer_size: "1MiB".into(),
            work_dir: None,
            pg_bin_dir: None,
            report: None,
        };
        assert_eq!(args.into_options().unwrap_err().kind(), ErrorKind::Usage);
    }
}
