//! Records the git revision the binary is built from (for `tsxfer --version`); a build
//! outside a git checkout, or without git, says "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TSXFER_GIT_REVISION={revision}");
    // A new commit moves HEAD or the branch it points at (a worktree has its own git dir).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        // A file that does not exist would make every build run this again.
        for file in ["HEAD", "logs/HEAD"] {
            let path = std::path::Path::new(&dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
