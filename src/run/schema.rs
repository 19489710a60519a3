//! The schema's steps of a load: the archives' sections (pg_restore), sequence values,
//! and the foreign keys that reference hypertables, which wait for the end of restoring
//! mode.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use futures_util::StreamExt;
use tokio_postgres::error::SqlState;
use tracing::info;

use super::load::Load;
use super::{check_drain, resume_hint};
use crate::error::{Error, Result};
use crate::objects::schema;
use crate::pg::Target;
use crate::quote::ident;
use crate::source::catalog;
use crate::target::state::Milestone;

/// Adds the foreign keys that reference hypertables, out of restoring mode (TimescaleDB
/// then checks them against the chunks). One an earlier attempt added, or whose table the
/// filters left out, is passed over.
pub(super) async fn add_hypertable_foreign_keys(
    tgt: &Target,
    keys: &[catalog::HypertableForeignKey],
) -> Result<()> {
    for k in keys {
        let row = tgt
            .query_one(
                "SELECT pg_catalog.to_regclass($1) IS NULL
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                                WHERE conrelid = pg_catalog.to_regclass($1) AND conname = $2)",
                &[&k.table, &k.name],
            )
            .await?;
        if row.get::<_, bool>(0) {
            continue;
        }
        tgt.execute(&k.statement).await.map_err(|e| {
            e.context(format!(
                "adding the foreign key {} of {} (it references a hypertable)",
                ident(&k.name),
                k.table
            ))
        })?;
    }
    Ok(())
}

/// Relations of `relkind` on the target, as quoted `schema.name` (filters may have left
/// some of the source's out).
pub(super) async fn target_relations(tgt: &Target, relkind: &str) -> Result<BTreeSet<String>> {
    Ok(tgt
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind::text = $1",
            &[&relkind],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub(super) async fn set_sequences(tgt: &Target, sequences: &[(String, i64, bool)]) -> Result<()> {
    let present = target_relations(tgt, "S").await?;
    let sequences: Vec<&(String, i64, bool)> = sequences
        .iter()
        .filter(|(n, _, _)| present.contains(n))
        .collect();
    for batch in sequences.chunks(200) {
        let sql: Vec<String> = batch
            .iter()
            .map(|(name, value, called)| {
                format!(
                    "SELECT pg_catalog.setval({}, {value}, {called})",
                    crate::quote::literal(name)
                )
            })
            .collect();
        tgt.execute(&sql.join(";\n"))
            .await
            .map_err(|e| e.context("setting sequence values on the target"))?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Section {
    PreData,
    PostData,
}

/// Restores one section of the main archive, then of every chunk archive (a dump of an
/// earlier version holds some; the chunks' DDL is generated since). Pre-data runs
/// on one connection (each statement its own transaction); post-data (indexes,
/// constraints, triggers) over the job pool, and stops between archives when the operator
/// asks. When resuming, post-data entries whose objects an earlier attempt made (read
/// from the target's catalog) are left out. Returns the entries left out, with why.
#[allow(clippy::too_many_arguments)]
pub(super) async fn restore_section(
    l: &Load<'_>,
    tgt: &Target,
    main: &std::path::Path,
    chunk_archives: &[PathBuf],
    section: Section,
    resumed: bool,
    skip: &BTreeSet<u32>,
    skip_entries: &BTreeSet<String>,
    drain: &AtomicBool,
) -> Result<Vec<String>> {
    let (name, main_jobs) = match section {
        Section::PreData => ("pre-data", 1),
        Section::PostData => ("post-data", l.jobs),
    };
    let owners: BTreeSet<String> = l.ex.roles.roles.iter().map(|r| r.name.clone()).collect();
    let restore_one = |archive: &std::path::Path, jobs: usize| {
        let owners = &owners;
        let archive = archive.to_path_buf();
        async move {
            if section == Section::PostData {
                // Post-data comes after the data milestone, whatever the data came from.
                check_drain(drain, resume_hint(Some(Milestone::Data), true))?;
            }
            let toc = l.archives.toc(&archive, Some(name)).await?;
            let (mut entries, left_out) = match section {
                Section::PreData => schema::pre_data_entries(&toc),
                Section::PostData => schema::post_data_entries(&toc),
            };
            entries.retain(|e| {
                !skip.contains(&e.oid)
                    && !skip_entries.iter().any(|s| e.rest.starts_with(s.as_str()))
            });
            if resumed && section == Section::PostData {
                let all = entries.len();
                entries = schema::post_data_left(tgt, entries, owners).await?;
                if entries.len() < all {
                    info!(
                        "{} of {all} post-data entries of {} were made by an earlier attempt",
                        all - entries.len(),
                        archive.display()
                    );
                }
            }
            l.archives
                .restore(
                    &l.options.target,
                    &archive,
                    &entries,
                    jobs,
                    false,
                    &format!("{name} restore"),
                )
                .await?;
            Ok::<_, Error>(left_out)
        }
    };
    let mut dropped = restore_one(main, main_jobs).await?;
    // The chunk archives hold independent tables: they are restored side by side, each
    // pg_restore with its share of the jobs.
    let at_once = l.jobs.clamp(1, chunk_archives.len().max(1));
    let each = (l.jobs / at_once).max(1);
    let mut restored = futures_util::stream::iter(
        chunk_archives
            .iter()
            .map(|archive| restore_one(archive, each)),
    )
    .buffered(at_once);
    while let Some(left_out) = restored.next().await {
        dropped.extend(left_out?);
    }
    Ok(dropped)
}

/// What adding an object says when an earlier attempt already added it.
pub(super) const ALREADY_THERE: &[SqlState] = &[
    SqlState::DUPLICATE_TABLE,
    SqlState::DUPLICATE_OBJECT,
    SqlState::INVALID_TABLE_DEFINITION,
];
