use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use clap::{CommandFactory, Parser};
use tokio::runtime::Runtime;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use tsxfer::cli::{
    Cli, Command, CompareArgs, DumpArgs, LogFormat, Metrics, MetricsArgs, MigrateArgs, Output,
    OutputArgs, PlanArgs, RestoreArgs, TargetArgs, WorkerArgs, expand_config,
};
use tsxfer::error::{Error, ErrorKind};
use tsxfer::observe::progress::{Progress, Screen};
use tsxfer::run::dump;
use tsxfer::run::{self, Job};

/// Whether stderr gets colours: on a terminal, unless NO_COLOR is set (no-color.org).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logging(format: LogFormat, quiet: bool, screen: &Screen) {
    // The driver reports server notices at info level; they are noise here.
    let default = if quiet {
        "warn"
    } else {
        "info,tokio_postgres=warn"
    };
    let filter = EnvFilter::try_from_env("TSXFER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let writer = screen.log_writer();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || writer.clone())
        .with_ansi(colour())
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

/// The first Ctrl-C or SIGTERM sets `drain` (units in flight finish, then the run stops);
/// the second completes the returned future (units in flight roll back). Abort the
/// returned task when the run is over, so later signals are not taken for it.
fn watch_signals(
    drain: Arc<AtomicBool>,
) -> (
    tokio::task::JoinHandle<()>,
    impl std::future::Future<Output = ()>,
) {
    let abort = Arc::new(tokio::sync::Notify::new());
    let notify = abort.clone();
    let task = tokio::spawn(async move {
        interrupted().await;
        drain.store(true, Ordering::SeqCst);
        warn!("stopping: units in flight finish first; Ctrl-C again aborts them");
        interrupted().await;
        notify.notify_one();
    });
    (task, async move { abort.notified().await })
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("tsxfer: {e}");
    ExitCode::from(e.kind().exit_code() as u8)
}

/// A run that ended like this was refused before it changed anything (bad usage, or a
/// preflight check): its outcome is the one error line.
fn refused<T>(result: &Result<T, Error>) -> bool {
    result
        .as_ref()
        .is_err_and(|e| matches!(e.kind(), ErrorKind::Usage | ErrorKind::Preflight))
}

/// After a run: the log lines held during its preflight (see `main`) are dropped when
/// it was refused, else written.
fn settle_log(screen: &Screen, refused: bool) {
    if refused {
        screen.discard();
    } else {
        screen.release();
    }
}

/// Bad usage as clap finds it, as one `tsxfer:` line and exit code 2; help and version
/// print as clap prints them.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as Clap;
    if matches!(
        e.kind(),
        Clap::DisplayHelp | Clap::DisplayVersion | Clap::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    fail(&Error::new(
        ErrorKind::Usage,
        clap_sentence(&e.render().to_string()),
    ))
}

/// The sentence of a clap error: its first paragraph on one line, without the
/// `error:` prefix (the usage and tips after it are left to `--help`).
fn clap_sentence(text: &str) -> String {
    let first: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let sentence = first.join(" ");
    let sentence = sentence.strip_prefix("error: ").unwrap_or(&sentence);
    format!("{sentence} (tsxfer --help lists the options)")
}

fn plan(runtime: &Runtime, args: PlanArgs) -> ExitCode {
    let opts = match args.into_options() {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(run::describe_plan(&opts)) {
        Ok((text, refusal)) => {
            print!("{text}");
            match refusal {
                Some(e) => fail(&e),
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => fail(&e),
    }
}

fn run(runtime: &Runtime, screen: &Screen, args: MigrateArgs) -> ExitCode {
    if args.dry_run {
        return plan(
            runtime,
            PlanArgs {
                transfer: args.transfer,
                select: args.select,
            },
        );
    }
    let output = args.output.clone();
    let (output, opts) = match with_output(output, || args.into_options()) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    load_target(runtime, screen, &output, Job::Migrate(&opts))
}

/// `tsxfer restore`: loads a dump into the target.
fn restore(runtime: &Runtime, screen: &Screen, args: RestoreArgs) -> ExitCode {
    let output = args.output.clone();
    let (output, opts) = match with_output(output, || args.into_options()) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    load_target(runtime, screen, &output, Job::Restore(&opts))
}

/// Runs a migration or a restore with its metrics, progress, report and signals.
fn load_target(runtime: &Runtime, screen: &Screen, output: &Output, job: Job<'_>) -> ExitCode {
    let progress = match serve_metrics(runtime, output.metrics, job.load().jobs) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let (mut report, result) = runtime.block_on(async {
        let watch = screen.watch(progress.clone());
        let drain = Arc::new(AtomicBool::new(false));
        let (signals, abort) = watch_signals(drain.clone());
        let outcome = run::run(job, progress.clone(), drain, abort).await;
        signals.abort();
        watch.stop();
        outcome
    });
    progress.ended(result.is_ok());
    let refused = refused(&result);
    settle_log(screen, refused);
    report.unfinished = progress.unfinished_units();
    // A refusal is its error line; a report is written for it only when asked for.
    if !refused {
        print!("{}", report.summary());
    }
    if !refused || output.report_given {
        write_report(&report, &output.report, !refused);
    }
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    };
    keep_serving(runtime, output.metrics);
    code
}

/// Writes `report` to `path` (making its directory), saying where when `say`.
fn write_report(report: &tsxfer::observe::report::Report, path: &Path, say: bool) {
    let written = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(Error::from),
        None => Ok(()),
    }
    .and_then(|()| report.write_json(path));
    match written {
        Ok(()) if say => println!("report: {}", path.display()),
        Ok(()) => {}
        Err(e) => eprintln!("tsxfer: cannot write the report to {}: {e}", path.display()),
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Serves the metrics endpoint when asked, then makes the run's progress (which registers
/// the run's metrics, so it comes after the endpoint).
fn serve_metrics(runtime: &Runtime, metrics: Metrics, jobs: usize) -> Result<Arc<Progress>, Error> {
    if let Some(addr) = metrics.addr {
        let _in_runtime = runtime.enter();
        tsxfer::observe::metrics::serve(addr, jobs)?;
        info!("metrics on http://{addr}/metrics");
    }
    Ok(Arc::new(Progress::new(jobs)))
}

/// After the run, with `--keep-serving`: serves the last values until Ctrl-C or SIGTERM.
fn keep_serving(runtime: &Runtime, metrics: Metrics) {
    if let (true, Some(addr)) = (metrics.keep_serving, metrics.addr) {
        info!("the run is over; still serving http://{addr}/metrics until Ctrl-C or SIGTERM");
        runtime.block_on(interrupted());
    }
}

/// Runs `work` as a command that copies (`dump`, `worker`): metrics served when asked, its
/// progress on screen, the first Ctrl-C or SIGTERM setting the drain flag `work` is
/// given and the second abandoning `work` with the error `aborted`. On success `done`
/// prints what `work` returned; then the last metrics stay up with `--keep-serving`.
fn supervised<T, F>(
    runtime: &Runtime,
    screen: &Screen,
    metrics: Metrics,
    jobs: usize,
    aborted: &'static str,
    work: impl FnOnce(Arc<Progress>, Arc<AtomicBool>) -> F,
    done: impl FnOnce(T),
) -> ExitCode
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    let progress = match serve_metrics(runtime, metrics, jobs) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(async {
        let watch = screen.watch(progress.clone());
        let drain = Arc::new(AtomicBool::new(false));
        let (signals, abort) = watch_signals(drain.clone());
        let outcome = tokio::select! {
            r = work(progress.clone(), drain) => r,
            () = abort => Err(Error::new(ErrorKind::Interrupted, aborted)),
        };
        signals.abort();
        watch.stop();
        outcome
    });
    progress.ended(result.is_ok());
    settle_log(screen, refused(&result));
    let code = match result {
        Ok(value) => {
            done(value);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    };
    keep_serving(runtime, metrics);
    code
}

/// The report and metrics choices and the options of a command, both checked before
/// anything runs.
fn with_output<T>(
    output: OutputArgs,
    options: impl FnOnce() -> Result<T, Error>,
) -> Result<(Output, T), Error> {
    Ok((output.validate(SystemTime::now(), &env)?, options()?))
}

/// The metrics endpoint and the options of a command, both checked before anything runs.
fn validated<T>(
    metrics: MetricsArgs,
    options: impl FnOnce() -> Result<T, Error>,
) -> Result<(Metrics, T), Error> {
    Ok((metrics.validate()?, options()?))
}

/// `tsxfer dump`: writes the migration into a directory.
fn dump(runtime: &Runtime, screen: &Screen, args: DumpArgs) -> ExitCode {
    let metrics = args.metrics.clone();
    let (metrics, opts) = match validated(metrics, || args.into_options()) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    supervised(
        runtime,
        screen,
        metrics,
        opts.jobs,
        "aborted: the units in flight were not written; run the same command again with --allow-inconsistent to finish",
        |progress, drain| dump::dump(&opts, progress, drain),
        |summary| print!("{}", summary.text(&opts.dir)),
    )
}

/// `tsxfer worker`: copies units of the run in the target until none is left.
fn worker(runtime: &Runtime, screen: &Screen, args: WorkerArgs) -> ExitCode {
    let metrics = args.metrics.clone();
    let (metrics, opts) = match validated(metrics, || args.into_options()) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    supervised(
        runtime,
        screen,
        metrics,
        opts.load.jobs,
        "aborted: units in flight were rolled back",
        |progress, drain| run::run_worker(&opts, progress, drain),
        |summary| println!("{summary}"),
    )
}

/// `tsxfer verify`: compares a source and a target by content, prints the report's
/// summary and writes it as JSON; exit code 5 when they differ.
fn compare(runtime: &Runtime, screen: &Screen, args: CompareArgs) -> ExitCode {
    let output = args.output.clone();
    let (output, opts) = match with_output(output, || args.into_options()) {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    let progress = match serve_metrics(runtime, output.metrics, opts.jobs) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let mut report = tsxfer::observe::report::Report {
        source: opts.source.describe(),
        target: opts.target.describe(),
        jobs: opts.jobs,
        verified_by: Some("their rows' content, read on both sides".to_string()),
        ..Default::default()
    };
    let result = runtime.block_on(async {
        let watch = screen.watch(progress.clone());
        let outcome = tokio::select! {
            r = tsxfer::run::verify::compare(&opts, progress.clone(), &mut report) => r,
            () = interrupted() => Err(Error::new(ErrorKind::Interrupted, "stopped on request; nothing was written")),
        };
        watch.stop();
        outcome
    });
    progress.ended(result.is_ok());
    report.success = result.is_ok();
    report.error = result.as_ref().err().map(|e| e.to_string());
    print!("{}", report.summary());
    match report.write_json(&output.report) {
        Ok(()) => println!("report: {}", output.report.display()),
        Err(e) => eprintln!(
            "tsxfer: cannot write the report to {}: {e}",
            output.report.display()
        ),
    }
    keep_serving(runtime, output.metrics);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// `tsxfer status` and `tsxfer clean`: one call on the target, its text printed.
fn on_target<F, Fut>(runtime: &Runtime, args: TargetArgs, f: F) -> ExitCode
where
    F: FnOnce(tsxfer::pg::conninfo::ConnInfo) -> Fut,
    Fut: std::future::Future<Output = Result<String, Error>>,
{
    let target = match args.into_conninfo() {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(f(target)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Writes what `write` makes to stdout; a closed pipe (`| head`) is not an error.
fn shell_text(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> ExitCode {
    let mut text = Vec::new();
    let written = write(&mut text).and_then(|()| std::io::stdout().write_all(&text));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(&Error::new(
            ErrorKind::Internal,
            format!("cannot write to stdout: {e}"),
        )),
    }
}

fn main() -> ExitCode {
    let args = match expand_config(std::env::args().collect(), &|k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let migrating = matches!(
        cli.command,
        None | Some(
            Command::Migrate(_)
                | Command::Worker(_)
                | Command::Dump(_)
                | Command::Restore(_)
                | Command::Verify(_)
        )
    );
    // Text logs of a run are held during its preflight, so that a refusal there is one
    // line; JSON logs and --verbose show everything as it happens.
    let hold = migrating && matches!(cli.log.log_format, LogFormat::Text) && !cli.log.verbose;
    let screen = Screen::new(
        cli.log.quiet,
        migrating && std::io::stderr().is_terminal(),
        hold,
    );
    init_logging(cli.log.log_format, cli.log.quiet, &screen);
    let runtime = match Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            return fail(&Error::new(
                ErrorKind::Internal,
                format!("cannot start: {e}"),
            ));
        }
    };
    match cli.command {
        Some(Command::Completions(args)) => shell_text(|out| {
            clap_complete::generate(args.shell, &mut Cli::command(), "tsxfer", out);
            Ok(())
        }),
        Some(Command::Man) => shell_text(|out| clap_mangen::Man::new(Cli::command()).render(out)),
        Some(Command::Plan(args)) => plan(&runtime, args),
        Some(Command::Worker(args)) => worker(&runtime, &screen, args),
        Some(Command::Status(args)) => {
            on_target(&runtime, args, |t| async move { run::status(&t).await })
        }
        Some(Command::Clean(args)) => {
            on_target(&runtime, args, |t| async move { run::clean(&t).await })
        }
        Some(Command::Migrate(args)) => run(&runtime, &screen, args),
        Some(Command::Dump(args)) => dump(&runtime, &screen, args),
        Some(Command::Restore(args)) => restore(&runtime, &screen, args),
        Some(Command::Verify(args)) => compare(&runtime, &screen, args),
        None => run(&runtime, &screen, cli.migrate),
    }
}
