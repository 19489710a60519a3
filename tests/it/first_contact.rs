//! What a newcomer meets first: a refusal is one line, logs in a file carry no colour
//! codes, reports do not litter the working directory, shell integration works, and the
//! test script's closing line counts what was skipped.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::cluster;
use crate::{Run, tsxfer};

/// Runs tsxfer in `dir` with `XDG_STATE_HOME=dir/state` and `extra_env`, nothing of
/// the test's own SOURCE/TARGET/PG* environment.
fn tsxfer_in(dir: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsxfer"));
    cmd.args(args)
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null());
    for var in [
        "SOURCE",
        "TARGET",
        "PGPASSWORD",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "NO_COLOR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("running tsxfer");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// A migration from a database that does not exist: one `tsxfer:` line, exit code 3
/// (refused by preflight), nothing on stdout, no report anywhere; with --verbose the log
/// lines come too, and without colour codes, stderr being a file here.
#[test]
fn a_refused_run_is_one_line_and_leaves_no_report() {
    let (src, tgt) = cluster::clusters();
    tgt.create_cloud_like_database("first_refused_tgt");
    let source = src.superuser_conninfo("first_no_such_database");
    let target = tgt.superuser_conninfo("first_refused_tgt");
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--source",
        &source,
        "--target",
        &target,
        "--metrics-addr",
        "off",
    ];
    let run = tsxfer_in(dir.path(), &args, &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{run:?}");
    assert!(lines[0].starts_with("tsxfer: "), "{run:?}");
    assert!(lines[0].contains("first_no_such_database"), "{run:?}");
    assert_eq!(files_under(dir.path()), Vec::<String>::new(), "{run:?}");

    let mut verbose = args.to_vec();
    verbose.push("--verbose");
    let run = tsxfer_in(dir.path(), &verbose, &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.lines().count() > 1, "{run:?}");
    assert!(run.stderr.contains("phase: preflight"), "{run:?}");
    assert!(
        !run.stderr.contains('\x1b'),
        "colour codes in a file: {run:?}"
    );
    assert_eq!(files_under(dir.path()), Vec::<String>::new(), "{run:?}");

    // Asked for, the report is written, refusal or not.
    let mut reported = args.to_vec();
    reported.extend(["--report", "asked.json"]);
    let run = tsxfer_in(dir.path(), &reported, &[]);
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(dir.path().join("asked.json").exists(), "{run:?}");
}

/// Bad usage clap finds is one `tsxfer:` line with exit code 2, like the usage errors
/// tsxfer finds itself; help and version still print as usual.
#[test]
fn usage_errors_are_one_line_with_exit_code_2() {
    for args in [
        &["restore", "--dir", ""][..],
        &["restore"],
        &["--no-such-flag"],
        &["completions", "tcsh"],
        &["--jobs", "many"],
        &["--source", "a", "--target", "b", "--jobs", "0"],
    ] {
        let run = tsxfer(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {run:?}");
        assert!(lines[0].starts_with("tsxfer: "), "{args:?}: {run:?}");
        assert!(!lines[0].contains("error:"), "{args:?}: {run:?}");
    }
    let help = tsxfer(&["--help"]);
    assert_eq!(help.code, 0, "{help:?}");
    assert!(help.stdout.contains("Exit codes:"), "{help:?}");
    let help = tsxfer(&["restore", "--help"]);
    assert_eq!(help.code, 0, "{help:?}");
    assert!(help.stdout.contains("--dir <DIR>"), "{help:?}");
}

/// On a terminal the log has colours, unless NO_COLOR is set. `script` gives the run a
/// pty; the run is a refusal shown with --verbose.
#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let screen = |no_color: bool| -> String {
        let typescript = dir.path().join(format!("typescript-{no_color}"));
        let command = format!(
            "exec {} --verbose --source 'host=127.0.0.1 port=1 user=u dbname=d connect_timeout=2' \
             --target 'host=127.0.0.1 port=1 user=u dbname=d' --metrics-addr off",
            env!("CARGO_BIN_EXE_tsxfer")
        );
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-e", "-c", &command])
            .arg(&typescript)
            .current_dir(dir.path())
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("TERM", "xterm")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let status = cmd.status().expect("running script(1)");
        let text = String::from_utf8_lossy(&std::fs::read(&typescript).unwrap()).to_string();
        assert_eq!(status.code(), Some(3), "{text}");
        assert!(text.contains("phase: preflight"), "{text}");
        text
    };
    // The timestamp of a log line is dimmed (ESC [2m) when colours are on.
    assert!(
        screen(false).contains("\x1b[2m"),
        "no colours on a terminal"
    );
    let plain = screen(true);
    assert!(!plain.contains("\x1b[2m"), "NO_COLOR is set:\n{plain:?}");
}

/// `tsxfer completions SHELL` prints a script for each shell (bash's parses), `tsxfer
/// man` a manual page, and `--version` names the git revision and the tested versions.
#[test]
fn shell_integration() {
    for shell in ["bash", "zsh", "fish"] {
        let run = tsxfer(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {run:?}");
        for word in ["tsxfer", "restore", "metrics-addr"] {
            assert!(run.stdout.contains(word), "{shell} lacks {word}: {run:?}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("tsxfer.bash");
            std::fs::write(&file, &run.stdout).unwrap();
            let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "{check:?}");
        }
    }
    let man = tsxfer(&["man"]);
    assert_eq!(man.code, 0, "{man:?}");
    assert!(man.stdout.contains(".TH tsxfer 1"), "{man:?}");
    assert!(man.stdout.contains("completions"), "{man:?}");

    let version = tsxfer(&["--version"]);
    assert_eq!(version.code, 0, "{version:?}");
    assert!(
        version
            .stdout
            .contains("tested with PostgreSQL 15 and TimescaleDB 2.19.3"),
        "{version:?}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let expected = match head {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    };
    assert!(
        version.stdout.contains(&format!("(git {expected})")),
        "{version:?}"
    );
}

/// scripts/summarize-tests.sh, fed a cargo test log and a skip file as the suite makes
/// them: the skipped cases listed, then the closing line last; a failure makes it exit
/// non-zero.
#[test]
fn the_test_script_counts_what_it_skipped() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/summarize-tests.sh");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cargo-test.log");
    let skipped = dir.path().join("skipped");
    let summarize = |log_text: &str, skip_text: &str, cargo_code: &str| {
        std::fs::write(&log, log_text).unwrap();
        std::fs::write(&skipped, skip_text).unwrap();
        let out = Command::new("bash")
            .arg(&script)
            .args([log.as_os_str(), skipped.as_os_str()])
            .arg(cargo_code)
            .output()
            .expect("running summarize-tests.sh");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let passing = "running 3 tests\ntest a ... ok\n\
        test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s\n\
        running 5 tests\ntest b ... ignored\n\
        test result: ok. 4 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 9.0s\n";
    let skips = "sources::one: compressed chunks not tested: apache build\n\
                 migrate::two: continuous aggregates not tested: apache build\n";
    let (code, out) = summarize(passing, skips, "0");
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("7 passed, 0 failed, 3 skipped"),
        "{out}"
    );
    assert!(
        out.contains("sources::one: compressed chunks not tested"),
        "{out}"
    );
    assert!(out.contains("b (ignored)"), "{out}");

    let failing = "running 2 tests\ntest c ... FAILED\n\
        test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.0s\n";
    let (code, out) = summarize(failing, "", "101");
    assert_ne!(code, Some(0), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("1 passed, 1 failed, 0 skipped"),
        "{out}"
    );

    // cargo failed with no failing test (a build error): that counts as a failure.
    let (code, out) = summarize("error[E0425]: cannot find value\n", "", "101");
    assert_ne!(code, Some(0), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("0 passed, 1 failed, 0 skipped"),
        "{out}"
    );
}
