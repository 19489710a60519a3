//! DDL through PostgreSQL's own tools: `pg_dump` reads the schema under the run's snapshot,
//! `pg_restore` applies it (the chunk tables' DDL is generated instead, see
//! [`crate::objects::chunk_ddl`]). tsxfer only chooses which archive entries go when, so that
//! TimescaleDB's catalog arrives after the tables it names, data before indexes, and no
//! single transaction locks an unbounded number of tables.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Error, ErrorKind, Result};
use crate::pg::Target;
use crate::pg::conninfo::ConnInfo;
use crate::quote;

/// The pg_dump and pg_restore this run uses.
#[derive(Debug, Clone)]
pub struct PgTools {
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    pub major: i32,
}

fn tool_version(path: &Path) -> Option<i32> {
    let out = std::process::Command::new(path)
        .env("LC_ALL", "C")
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(2)?;
    version.split('.').next()?.parse().ok()
}

/// Finds pg_dump/pg_restore: in `bin_dir` if given, else Debian's per-version directories
/// (the source's major version first), else `PATH`. Refuses tools older than the source.
pub fn find_tools(bin_dir: Option<&Path>, source_major: i32) -> Result<PgTools> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = bin_dir {
        dirs.push(d.to_path_buf());
    } else {
        for major in source_major..source_major + 5 {
            dirs.push(PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")));
        }
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
    }
    let mut seen_old = None;
    for dir in &dirs {
        let dump = dir.join("pg_dump");
        let restore = dir.join("pg_restore");
        if !dump.is_file() || !restore.is_file() {
            continue;
        }
        match (tool_version(&dump), tool_version(&restore)) {
            (Some(d), Some(r)) if d >= source_major && r >= source_major => {
                return Ok(PgTools {
                    pg_dump: dump,
                    pg_restore: restore,
                    major: d.min(r),
                });
            }
            (Some(d), _) => seen_old = Some((dump.clone(), d)),
            _ => {}
        }
    }
    Err(Error::new(
        ErrorKind::Preflight,
        match (seen_old, bin_dir) {
            (Some((path, v)), _) => format!(
                "{} is version {v}, older than the source server ({source_major}); install postgresql-client-{source_major} or point --pg-bin-dir at a newer one",
                path.display()
            ),
            (None, Some(d)) => format!("no pg_dump and pg_restore in {}", d.display()),
            (None, None) => format!(
                "pg_dump and pg_restore not found; install postgresql-client-{source_major} or give --pg-bin-dir"
            ),
        },
    ))
}

/// Archive entry descriptions of more than one word (pg_dump's names).
const MULTI_WORD_DESCS: &[&str] = &[
    "ACCESS METHOD",
    "BLOB DATA",
    "BLOB METADATA",
    "CHECK CONSTRAINT",
    "DEFAULT ACL",
    "EVENT TRIGGER",
    "FK CONSTRAINT",
    "FOREIGN DATA WRAPPER",
    "FOREIGN SERVER",
    "FOREIGN TABLE",
    "INDEX ATTACH",
    "LARGE OBJECT",
    "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "PROCEDURAL LANGUAGE",
    "PUBLICATION TABLE",
    "PUBLICATION TABLES IN SCHEMA",
    "ROW SECURITY",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "SHELL TYPE",
    "TABLE ATTACH",
    "TABLE DATA",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
    "USER MAPPING",
];

/// One line of a `pg_restore -l` listing.
#[derive(Debug, Clone, PartialEq)]
pub struct TocEntry {
    pub line: String,
    /// The object's OID (for a TABLE entry, the relation's).
    pub oid: u32,
    /// The entry's description and names, e.g. `TABLE DATA _timescaledb_catalog chunk postgres`.
    pub rest: String,
}

impl TocEntry {
    fn parse(line: &str) -> Option<TocEntry> {
        if line.starts_with(';') || line.trim().is_empty() {
            return None;
        }
        let (id, rest) = line.split_once(';')?;
        id.trim().parse::<u64>().ok()?;
        let mut parts = rest.trim_start().splitn(3, ' ');
        parts.next()?;
        let oid = parts.next()?.parse().ok()?;
        Some(TocEntry {
            line: line.to_string(),
            oid,
            rest: parts.next()?.to_string(),
        })
    }

    /// The entry's description: the longest known multi-word one it starts with, else its
    /// first word.
    pub fn desc(&self) -> &str {
        MULTI_WORD_DESCS
            .iter()
            .filter(|d| self.rest.starts_with(**d) && self.rest[d.len()..].starts_with(' '))
            .max_by_key(|d| d.len())
            .copied()
            .unwrap_or_else(|| self.rest.split(' ').next().unwrap_or(""))
    }

    pub fn is(&self, desc: &str) -> bool {
        self.desc() == desc
    }
}

pub fn parse_toc(listing: &str) -> Vec<TocEntry> {
    listing.lines().filter_map(TocEntry::parse).collect()
}

/// The entries of `toc` that `leave_out` has no reason against, and a line for each one
/// left out.
fn keep_entries(
    toc: &[TocEntry],
    leave_out: impl Fn(&TocEntry) -> Option<&'static str>,
) -> (Vec<TocEntry>, Vec<String>) {
    let mut dropped = Vec::new();
    let mut kept = Vec::new();
    for e in toc {
        match leave_out(e) {
            Some(reason) => dropped.push(format!("{} not restored ({reason})", e.rest.trim_end())),
            None => kept.push(e.clone()),
        }
    }
    (kept, dropped)
}

/// Entries restored with the pre-data, minus what a non-superuser target cannot take: a
/// comment on an extension belongs to the extension's owner.
pub fn pre_data_entries(toc: &[TocEntry]) -> (Vec<TocEntry>, Vec<String>) {
    keep_entries(toc, |e| {
        (e.is("COMMENT") && e.rest.starts_with("COMMENT - EXTENSION "))
            .then_some("only the extension's owner may comment on it")
    })
}

/// Post-data entries, minus event triggers (superuser only on the target).
pub fn post_data_entries(toc: &[TocEntry]) -> (Vec<TocEntry>, Vec<String>) {
    keep_entries(toc, |e| {
        e.is("EVENT TRIGGER")
            .then_some("event triggers need a superuser")
    })
}

/// The entries of `entries` whose object is not in `present` (each as "description schema
/// tag", see sql/target_post_data_present.sql). An entry's line ends with its owner, one
/// of `owners`, after names that may themselves hold spaces: the owner is split off at
/// each space from the right until a known role is found.
pub fn not_present(
    entries: Vec<TocEntry>,
    present: &HashSet<String>,
    owners: &BTreeSet<String>,
) -> Vec<TocEntry> {
    entries
        .into_iter()
        .filter(|e| {
            let rest = e.rest.trim_end();
            !rest
                .char_indices()
                .filter(|(_, c)| *c == ' ')
                .any(|(i, _)| {
                    let owner = &rest[i + 1..];
                    (owners.contains(owner) || owner == "-") && present.contains(&rest[..i])
                })
        })
        .collect()
}

/// The post-data entries of `entries` an earlier attempt has not made on the target yet:
/// a resumed post-data pass restores only those, whatever point the earlier one was
/// stopped at (each entry commits on its own).
pub async fn post_data_left(
    tgt: &Target,
    entries: Vec<TocEntry>,
    owners: &BTreeSet<String>,
) -> Result<Vec<TocEntry>> {
    Ok(not_present(entries, &post_data_present(tgt).await?, owners))
}

/// The post-data objects the target has, each as "description schema tag" (see
/// sql/target_post_data_present.sql).
pub async fn post_data_present(tgt: &Target) -> Result<HashSet<String>> {
    Ok(tgt
        .query(include_str!("../sql/target_post_data_present.sql"), &[])
        .await?
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .collect())
}

/// How an archive listing starts the entry of the user mapping pg_dump tags `tag`
/// (`USER MAPPING user SERVER server`; such entries have no OID to tell them by).
pub fn user_mapping_entry(tag: &str) -> String {
    format!("USER MAPPING - {tag} ")
}

/// Topological order of `tables` over `references` (table → tables it references), ties
/// and cycles broken by name so the result is stable.
pub fn fk_order(tables: &[String], references: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let wanted: BTreeSet<&String> = tables.iter().collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while out.len() < wanted.len() {
        let ready: Vec<&String> = wanted
            .iter()
            .filter(|t| !done.contains(t.as_str()))
            .filter(|t| {
                references.get(t.as_str()).is_none_or(|refs| {
                    refs.iter()
                        .all(|r| r == **t || done.contains(r) || !wanted.contains(&r))
                })
            })
            .copied()
            .collect();
        let next: Vec<&String> = if ready.is_empty() {
            wanted
                .iter()
                .filter(|t| !done.contains(t.as_str()))
                .take(1)
                .copied()
                .collect()
        } else {
            ready
        };
        for t in next {
            done.insert(t.clone());
            out.push(t.clone());
        }
    }
    out
}

/// `pg_dump -T` patterns that leave chunk tables out of the main dump: two wildcard
/// patterns per schema when every chunk there has TimescaleDB's standard name and no
/// other table matches them, exact names otherwise.
pub fn chunk_exclusion_patterns(
    chunks: &[(String, String)],
    non_chunk_names: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    fn standard(name: &str) -> bool {
        let core = name
            .strip_prefix("compress_hyper_")
            .or_else(|| name.strip_prefix("_hyper_"))
            .and_then(|n| n.strip_suffix("_chunk"));
        core.is_some_and(|c| {
            let mut parts = c.split('_');
            matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
                if !a.is_empty() && !b.is_empty()
                && a.bytes().all(|x| x.is_ascii_digit()) && b.bytes().all(|x| x.is_ascii_digit()))
        })
    }
    let mut by_schema: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (s, n) in chunks {
        by_schema.entry(s).or_default().push(n);
    }
    let mut patterns = Vec::new();
    for (schema, names) in by_schema {
        let others = non_chunk_names.get(schema).cloned().unwrap_or_default();
        let clash = others.iter().any(|n| standard(n));
        let schema_pat = quote::dump_pattern(schema);
        if !clash {
            patterns.push(format!("{schema_pat}._hyper_*_chunk"));
            patterns.push(format!("{schema_pat}.compress_hyper_*_chunk"));
        }
        for n in names {
            if clash || !standard(n) {
                patterns.push(format!("{schema_pat}.{}", quote::dump_pattern(n)));
            }
        }
    }
    patterns
}

/// Session settings for pg_restore's connections to the target (`PGOPTIONS`), from the
/// target's `maintenance_work_mem` and `shared_buffers` and the number of sessions.
///
/// Index builds sort in `maintenance_work_mem` (64 MB by default), and a bigger sort
/// spills to disk: each of the `jobs` sessions may take up to an equal share of
/// `shared_buffers` (which servers size at about a quarter of their memory), at most
/// 1 GiB, never less than the server's own setting. Every statement pg_restore runs
/// commits on its own, thousands with many chunks: `synchronous_commit = off` spares each
/// its wait for the WAL flush (a crash can then lose the last few, which a resumed run
/// makes again, as it does for those it never ran).
pub fn restore_pgoptions(maintenance_work_mem: i64, shared_buffers: i64, jobs: usize) -> String {
    let share = shared_buffers / i64::try_from(jobs.max(1)).unwrap_or(i64::MAX);
    let memory = maintenance_work_mem.max(share.min(1 << 30));
    format!(
        "-c maintenance_work_mem={}kB -c synchronous_commit=off",
        memory / 1024
    )
}

/// [`restore_pgoptions`] for the target `tgt`.
pub async fn target_restore_pgoptions(tgt: &Target, jobs: usize) -> Result<String> {
    let row = tgt
        .query_one(
            "SELECT pg_catalog.pg_size_bytes(current_setting('maintenance_work_mem')),
                    pg_catalog.pg_size_bytes(current_setting('shared_buffers'))",
            &[],
        )
        .await?;
    Ok(restore_pgoptions(row.get(0), row.get(1), jobs))
}

/// Runs pg_dump/pg_restore with the connection's secrets in private files or the
/// environment ([`ConnInfo::child_env`]), never on the command line.
async fn run_tool(
    program: &Path,
    args: &[String],
    info: Option<&ConnInfo>,
    what: &str,
) -> Result<String> {
    run_tool_with(program, args, info, None, what).await
}

/// Stops a child's whole process group (pg_restore's parallel workers with it) when
/// dropped before it is disarmed: when the run is aborted while the child works.
struct ChildGroup(Option<i32>);

impl ChildGroup {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for ChildGroup {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals that process group; it touches
            // no memory of ours. SIGTERM lets pg_restore cancel its queries on the server.
            unsafe {
                libc::kill(-pgid, libc::SIGTERM);
            }
        }
    }
}

/// As [`run_tool`], with `pgoptions` before the user's own `PGOPTIONS` (so that theirs
/// win). The child runs in its own process group, so a Ctrl-C in the terminal reaches
/// tsxfer only, which decides when to stop it; and with `LC_MESSAGES=C`, so that what it
/// prints reads the same whatever the user's locale. Success is its exit status alone.
async fn run_tool_with(
    program: &Path,
    args: &[String],
    info: Option<&ConnInfo>,
    pgoptions: Option<&str>,
    what: &str,
) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE")
        .env_remove("LC_ALL")
        .env_remove("LANGUAGE")
        .env("LC_MESSAGES", "C")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Held until the tool has exited: it owns the private password and key files.
    let child_env = info.map(ConnInfo::child_env).transpose()?;
    for (var, value) in child_env.iter().flat_map(|c| c.vars.iter()) {
        cmd.env(var, value);
    }
    if let Some(ours) = pgoptions {
        let theirs = std::env::var("PGOPTIONS").unwrap_or_default();
        cmd.env("PGOPTIONS", format!("{ours} {theirs}").trim_end());
    }
    let cannot = |e: std::io::Error| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot run {}: {e}", program.display()),
        )
    };
    let child = cmd.spawn().map_err(cannot)?;
    let mut group = ChildGroup(child.id().and_then(|id| i32::try_from(id).ok()));
    let out = child.wait_with_output().await.map_err(cannot)?;
    group.disarm();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() > 12 {
            lines.drain(..lines.len() - 12);
        }
        return Err(Error::new(
            ErrorKind::Schema,
            format!("{what} failed: {}", lines.join(" | ")),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// When the target's server started (it changes when the server restarts).
async fn server_started(target: &ConnInfo) -> Result<String> {
    let tgt = Target::connect(target, "probe").await?;
    Ok(tgt
        .query_one("SELECT pg_catalog.pg_postmaster_start_time()::text", &[])
        .await?
        .get(0))
}

/// The archive files of one run, in a private working directory.
pub struct Archives {
    pub tools: PgTools,
    /// Where the archives are (or go).
    pub dir: PathBuf,
    /// Where restore lists are written.
    pub work: PathBuf,
    /// `PGOPTIONS` of pg_restore's sessions on the target ([`restore_pgoptions`]).
    pub restore_pgoptions: String,
}

impl Archives {
    /// `pg_dump --format=custom` of the source under `snapshot`, with `extra` arguments.
    pub async fn dump(
        &self,
        source: &ConnInfo,
        snapshot: &str,
        file: &str,
        extra: Vec<String>,
    ) -> Result<PathBuf> {
        let path = self.dir.join(file);
        let mut args = vec![
            "--format=custom".to_string(),
            format!("--file={}", path.display()),
            format!("--snapshot={snapshot}"),
            "--no-subscriptions".into(),
            "--no-blobs".into(),
        ];
        args.extend(extra);
        args.push(format!(
            "--dbname={}",
            source.libpq_string("tsxfer pg_dump")
        ));
        run_tool(
            &self.tools.pg_dump,
            &args,
            Some(source),
            "pg_dump of the source",
        )
        .await?;
        Ok(path)
    }

    /// The archive's table of contents, for one section or all.
    pub async fn toc(&self, archive: &Path, section: Option<&str>) -> Result<Vec<TocEntry>> {
        let mut args = vec!["--list".to_string()];
        if let Some(s) = section {
            args.push(format!("--section={s}"));
        }
        args.push(archive.display().to_string());
        let listing = run_tool(&self.tools.pg_restore, &args, None, "pg_restore --list").await?;
        Ok(parse_toc(&listing))
    }

    /// Restores `entries` of `archive` into the target (owners and grants are set apart),
    /// stopping at the first error.
    pub async fn restore(
        &self,
        target: &ConnInfo,
        archive: &Path,
        entries: &[TocEntry],
        jobs: usize,
        single_transaction: bool,
        what: &str,
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let list = self.work.join(format!(
            "{}.{}.list",
            archive
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("archive"),
            what.replace(' ', "_")
        ));
        let text: String = entries.iter().map(|e| format!("{}\n", e.line)).collect();
        std::fs::write(&list, text)?;
        let mut args = vec![
            "--no-owner".to_string(),
            "--no-acl".into(),
            "--no-tablespaces".into(),
            format!("--use-list={}", list.display()),
            format!("--dbname={}", target.libpq_string("tsxfer pg_restore")),
            "--exit-on-error".into(),
        ];
        if single_transaction {
            args.push("--single-transaction".into());
        } else if jobs > 1 {
            args.push(format!("--jobs={jobs}"));
        }
        args.push(archive.display().to_string());
        let before = server_started(target).await.ok();
        let restored = run_tool_with(
            &self.tools.pg_restore,
            &args,
            Some(target),
            Some(&self.restore_pgoptions),
            what,
        )
        .await;
        match restored {
            Ok(_) => Ok(()),
            // pg_restore says why in text; whether the target went away meanwhile (it
            // cannot be reached, or it was restarted) is asked of the target itself.
            Err(e) => Err(match server_started(target).await {
                Err(probe) if probe.is_retryable() => e.link_broken(),
                Ok(now) if before.is_some_and(|b| b != now) => e.link_broken(),
                _ => e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\
;
; Archive created at 2026-11-26
;
4263; 1262 16384 DATABASE - src postgres
2; 3079 16385 EXTENSION - timescaledb
4264; 0 0 COMMENT - EXTENSION timescaledb
233; 1259 17001 TABLE public metrics postgres
4101; 0 16400 TABLE DATA _timescaledb_catalog chunk postgres
4100; 0 16390 TABLE DATA _timescaledb_catalog hypertable postgres
4102; 0 16410 TABLE DATA _timescaledb_catalog dimension postgres
4300; 0 0 SEQUENCE SET _timescaledb_catalog chunk_id_seq postgres
4301; 0 0 SEQUENCE SET public my_seq postgres
4400; 3466 17100 EVENT TRIGGER - audit postgres
";

    fn refs() -> BTreeMap<String, BTreeSet<String>> {
        let mut m = BTreeMap::new();
        m.insert(
            "_timescaledb_catalog.chunk".to_string(),
            ["_timescaledb_catalog.hypertable".to_string()].into(),
        );
        m.insert(
            "_timescaledb_catalog.dimension".to_string(),
            ["_timescaledb_catalog.hypertable".to_string()].into(),
        );
        m
    }

    #[test]
    fn index_builds_share_shared_buffers_up_to_a_gibibyte_never_below_the_setting() {
        const MB: i64 = 1 << 20;
        assert_eq!(
            restore_pgoptions(64 * MB, 512 * MB, 2),
            "-c maintenance_work_mem=262144kB -c synchronous_commit=off"
        );
        assert!(restore_pgoptions(64 * MB, 32 * 1024 * MB, 4).contains("=1048576kB"));
        assert!(restore_pgoptions(2048 * MB, 512 * MB, 2).contains("=2097152kB"));
        assert!(restore_pgoptions(64 * MB, 128 * MB, 16).contains("=65536kB"));
        assert!(restore_pgoptions(64 * MB, 512 * MB, 0).contains("=524288kB"));
    }

    #[test]
    fn toc_lines_parse_and_classify() {
        let toc = parse_toc(LISTING);
        assert_eq!(toc.len(), 10);
        assert!(toc[3].is("TABLE"));
        assert_eq!(toc[3].oid, 17001);
        assert!(!toc[4].is("TABLE"));
        assert!(toc[4].is("TABLE DATA"));
    }

    #[test]
    fn extension_comments_and_event_triggers_are_left_out_and_said() {
        let toc = parse_toc(LISTING);
        let (kept, dropped) = pre_data_entries(&toc);
        assert_eq!(kept.len(), toc.len() - 1);
        assert!(dropped[0].contains("COMMENT - EXTENSION timescaledb"));
        let (kept, dropped) = post_data_entries(&toc);
        assert_eq!(kept.len(), toc.len() - 1);
        assert!(dropped[0].contains("EVENT TRIGGER"));
    }

    #[test]
    fn entries_whose_objects_exist_are_left_out_names_with_spaces_included() {
        let toc = parse_toc(
            "10; 1259 1 INDEX public a b postgres\n\
             11; 1259 2 INDEX public a postgres\n\
             12; 2606 3 CONSTRAINT public my table my pk app owner\n\
             13; 2620 4 TRIGGER public t audit postgres\n",
        );
        let present: HashSet<String> = ["INDEX public a", "CONSTRAINT public my table my pk"]
            .map(String::from)
            .into();
        let owners: BTreeSet<String> = ["postgres", "app owner"].map(String::from).into();
        let left = not_present(toc, &present, &owners);
        let ids: Vec<u32> = left.iter().map(|e| e.oid).collect();
        // "a b" is another index than "a"; the trigger is not there yet.
        assert_eq!(ids, [1, 4]);
    }

    #[test]
    fn catalog_tables_come_after_the_tables_they_reference() {
        let names = [
            "_timescaledb_catalog.chunk",
            "_timescaledb_catalog.dimension",
            "_timescaledb_catalog.hypertable",
        ]
        .map(String::from);
        assert_eq!(
            fk_order(&names, &refs()),
            [
                "_timescaledb_catalog.hypertable",
                "_timescaledb_catalog.chunk",
                "_timescaledb_catalog.dimension",
            ]
        );
    }

    #[test]
    fn fk_order_survives_cycles_and_self_references() {
        let mut refs = BTreeMap::new();
        refs.insert("a".to_string(), ["b".to_string()].into());
        refs.insert("b".to_string(), ["a".to_string()].into());
        refs.insert("c".to_string(), ["c".to_string(), "a".to_string()].into());
        let order = fk_order(&["c".into(), "b".into(), "a".into()], &refs);
        assert_eq!(order.len(), 3);
        assert!(order.iter().position(|x| x == "c") > order.iter().position(|x| x == "a"));
    }

    #[test]
    fn chunk_patterns_use_wildcards_unless_a_table_would_match() {
        let chunks = vec![
            (
                "_timescaledb_internal".to_string(),
                "_hyper_1_1_chunk".to_string(),
            ),
            (
                "_timescaledb_internal".to_string(),
                "compress_hyper_2_5_chunk".to_string(),
            ),
            ("_timescaledb_internal".to_string(), "my chunk".to_string()),
        ];
        let mut others = BTreeMap::new();
        others.insert(
            "_timescaledb_internal".to_string(),
            vec!["_compressed_hypertable_2".to_string()],
        );
        let pats = chunk_exclusion_patterns(&chunks, &others);
        assert_eq!(
            pats,
            [
                "\"_timescaledb_internal\"._hyper_*_chunk",
                "\"_timescaledb_internal\".compress_hyper_*_chunk",
                "\"_timescaledb_internal\".\"my chunk\"",
            ]
        );
        others.insert(
            "_timescaledb_internal".to_string(),
            vec!["_hyper_9_9_chunk".to_string()],
        );
        let pats = chunk_exclusion_patterns(&chunks, &others);
        assert_eq!(pats.len(), 3);
        assert!(pats.iter().all(|p| !p.contains('*')));
    }
}
