use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use tsxfer::cli::{Cli, Command, LogFormat};
use tsxfer::error::{Error, ErrorKind};
use tsxfer::migrate;
use tsxfer::progress::{self, Progress};

fn init_logging(format: LogFormat, quiet: bool) {
    // The driver reports server notices at info level; they are noise here.
    let default = if quiet {
        "warn"
    } else {
        "info,tokio_postgres=warn"
    };
    let filter = EnvFilter::try_from_env("TSXFER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Completes at the first Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("tsxfer: {e}");
    ExitCode::from(e.kind().exit_code() as u8)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log.log_format, cli.log.quiet);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            return fail(&Error::new(
                ErrorKind::Internal,
                format!("cannot start: {e}"),
            ));
        }
    };
    match cli.command {
        Some(Command::Plan(args)) => {
            let opts = match args.into_options() {
                Ok(o) => o,
                Err(e) => return fail(&e),
            };
            match runtime.block_on(migrate::describe_plan(&opts)) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        command => {
            let args = match command {
                Some(Command::Migrate(a)) => a,
                _ => cli.migrate,
            };
            let report_path = args.report.clone();
            let opts = match args.into_options() {
                Ok(o) => o,
                Err(e) => return fail(&e),
            };
            let progress = Arc::new(Progress::new(opts.jobs));
            let (report, result) = runtime.block_on(async {
                let reporter =
                    progress::report_periodically(progress.clone(), Duration::from_secs(10));
                let outcome = migrate::run(&opts, progress, interrupted()).await;
                reporter.abort();
                outcome
            });
            print!("{}", report.summary());
            if let Some(path) = report_path
                && let Err(e) = report.write_json(&path)
            {
                eprintln!("tsxfer: cannot write the report to {}: {e}", path.display());
            }
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}
