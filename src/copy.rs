//! The copy path: source `COPY ... TO STDOUT` → a bounded buffer → target
//! `COPY ... FROM STDIN`, one unit per pair of transactions. Nothing waits in an unbounded
//! queue: when the target is slower, sending blocks, so the source stream is not polled,
//! so the driver stops reading the source socket.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt, pin_mut};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result, pg_message};
use crate::pg::{Source, Target};
use crate::plan::{CopyUnit, UnitKind};
use crate::progress::Progress;

/// What copying one unit did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitOutcome {
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Time spent waiting for the target to take the next buffer.
    pub blocked_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Skip(usize),
    ExtensionLength,
    FieldCount,
    FieldLength,
    Trailer,
}

/// Counts the rows of a COPY stream as it passes, whatever the chunk boundaries: lines in
/// text format, tuples in binary format (whose framing it follows without decoding values).
#[derive(Debug, Clone)]
pub struct RowCounter {
    binary: bool,
    rows: u64,
    phase: Phase,
    after_skip: Phase,
    acc: [u8; 4],
    acc_len: usize,
    fields_left: u16,
}

/// 11-byte signature and 4-byte flags field open every binary COPY stream.
const BINARY_HEADER_FIXED: usize = 15;

impl RowCounter {
    pub fn new(binary: bool) -> RowCounter {
        RowCounter {
            binary,
            rows: 0,
            phase: Phase::Skip(BINARY_HEADER_FIXED),
            after_skip: Phase::ExtensionLength,
            acc: [0; 4],
            acc_len: 0,
            fields_left: 0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// A binary stream is whole once its trailer has been seen.
    pub fn complete(&self) -> bool {
        !self.binary || self.phase == Phase::Trailer
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        if !self.binary {
            self.rows += data.iter().filter(|&&b| b == b'\n').count() as u64;
            return;
        }
        while !data.is_empty() {
            match self.phase {
                Phase::Trailer => return,
                Phase::Skip(left) => {
                    let n = left.min(data.len());
                    data = &data[n..];
                    self.phase = if n == left {
                        self.after_skip
                    } else {
                        Phase::Skip(left - n)
                    };
                }
                phase => {
                    let need = if phase == Phase::FieldCount { 2 } else { 4 };
                    let take = (need - self.acc_len).min(data.len());
                    self.acc[self.acc_len..self.acc_len + take].copy_from_slice(&data[..take]);
                    self.acc_len += take;
                    data = &data[take..];
                    if self.acc_len < need {
                        continue;
                    }
                    self.acc_len = 0;
                    match phase {
                        Phase::ExtensionLength => {
                            let len = u32::from_be_bytes(self.acc) as usize;
                            self.skip_then(len, Phase::FieldCount);
                        }
                        Phase::FieldCount => {
                            let count = i16::from_be_bytes([self.acc[0], self.acc[1]]);
                            if count < 0 {
                                self.phase = Phase::Trailer;
                            } else {
                                self.rows += 1;
                                self.fields_left = count as u16;
                                self.phase = if count == 0 {
                                    Phase::FieldCount
                                } else {
                                    Phase::FieldLength
                                };
                            }
                        }
                        _ => {
                            let len = i32::from_be_bytes(self.acc);
                            self.fields_left -= 1;
                            let next = if self.fields_left == 0 {
                                Phase::FieldCount
                            } else {
                                Phase::FieldLength
                            };
                            self.skip_then(len.max(0) as usize, next);
                        }
                    }
                }
            }
        }
    }

    fn skip_then(&mut self, len: usize, next: Phase) {
        if len == 0 {
            self.phase = next;
        } else {
            self.after_skip = next;
            self.phase = Phase::Skip(len);
        }
    }
}

fn copy_error(unit: &CopyUnit, side: &str, err: &tokio_postgres::Error) -> Error {
    Error::new(
        ErrorKind::Copy,
        format!(
            "copying {} {}: the {side} says: {}",
            unit.kind.label(),
            unit.relation(),
            pg_message(err)
        ),
    )
    .retryable(crate::error::is_transient(err))
}

/// Copies one table unit, its rows as of `snapshot`, into the target transaction the
/// caller has open (and commits). On error the caller must drop both connections: they
/// may be mid-COPY.
pub async fn copy_table(
    src: &Source,
    tgt: &Target,
    unit: &CopyUnit,
    snapshot: &str,
    buffer_size: usize,
    progress: &Progress,
    stream: usize,
) -> Result<UnitOutcome> {
    let started = Instant::now();
    src.begin_snapshot(Some(snapshot))
        .await
        .map_err(|e| e.context(format!("opening the snapshot for {}", unit.relation())))?;
    let out = src.copy_out(&unit.copy_out_sql()).await.map_err(|e| {
        e.with_kind(ErrorKind::Copy)
            .context(format!("reading {} from the source", unit.relation()))
    })?;
    let sink = tgt.copy_in(&unit.copy_in_sql()).await.map_err(|e| {
        e.with_kind(ErrorKind::Copy)
            .context(format!("writing {} into the target", unit.relation()))
    })?;
    pin_mut!(out);
    pin_mut!(sink);
    let mut counter = RowCounter::new(unit.binary);
    let mut buf = BytesMut::with_capacity(buffer_size);
    let mut bytes = 0u64;
    let mut blocked = Duration::ZERO;
    let mut rows_reported = 0u64;
    loop {
        let next = out.next().await;
        let end = next.is_none();
        if let Some(chunk) = next {
            let chunk = chunk.map_err(|e| copy_error(unit, "source", &e))?;
            counter.feed(&chunk);
            bytes += chunk.len() as u64;
            buf.extend_from_slice(&chunk);
        }
        if buf.len() >= buffer_size || (end && !buf.is_empty()) {
            let len = buf.len() as u64;
            let wait = Instant::now();
            sink.send(buf.split().freeze())
                .await
                .map_err(|e| copy_error(unit, "target", &e))?;
            let waited = wait.elapsed();
            blocked += waited;
            progress.blocked(waited.as_secs_f64());
            progress.unit_progress(stream, unit.kind, len, counter.rows() - rows_reported);
            rows_reported = counter.rows();
            buf.reserve(buffer_size);
        }
        if end {
            break;
        }
    }
    if !counter.complete() {
        return Err(Error::new(
            ErrorKind::Copy,
            format!(
                "copying {}: the source's COPY stream ended before its end marker",
                unit.relation()
            ),
        ));
    }
    let written = sink
        .as_mut()
        .finish()
        .await
        .map_err(|e| copy_error(unit, "target", &e))?;
    if written != counter.rows() {
        return Err(Error::new(
            ErrorKind::Copy,
            format!(
                "copying {}: {} rows read from the source but the target took {written}",
                unit.relation(),
                counter.rows()
            ),
        ));
    }
    src.end().await?;
    Ok(UnitOutcome {
        rows: written,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        blocked_seconds: blocked.as_secs_f64(),
    })
}

/// Copies every large object as of `snapshot`, in slices of `buffer_size` bytes, into the
/// target transaction the caller has open. Owners and grants are set with the other
/// privileges.
pub async fn copy_large_objects(
    src: &Source,
    tgt: &Target,
    snapshot: &str,
    buffer_size: usize,
) -> Result<UnitOutcome> {
    debug_assert!(buffer_size > 0);
    let started = Instant::now();
    let slice = i32::try_from(buffer_size).unwrap_or(i32::MAX);
    src.begin_snapshot(Some(snapshot)).await?;
    let oids = src
        .query(
            "SELECT oid, pg_catalog.obj_description(oid, 'pg_largeobject')
             FROM pg_catalog.pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await?;
    let lo_error = |side: &str, oid: u32, e: Error| {
        let retryable = e.is_retryable();
        Error::new(
            ErrorKind::Copy,
            format!("copying large object {oid}: the {side} says: {e}"),
        )
        .retryable(retryable)
    };
    let mut bytes = 0u64;
    for row in &oids {
        let oid: u32 = row.get(0);
        tgt.query_one("SELECT pg_catalog.lo_create($1)", &[&oid])
            .await
            .map_err(|e| lo_error("target", oid, e))?;
        if let Some(comment) = row.get::<_, Option<String>>(1) {
            tgt.execute(&format!(
                "COMMENT ON LARGE OBJECT {oid} IS {}",
                crate::quote::literal(&comment)
            ))
            .await
            .map_err(|e| lo_error("target", oid, e))?;
        }
        let mut offset: i64 = 0;
        loop {
            let piece: Vec<u8> = src
                .query_one(
                    "SELECT pg_catalog.lo_get($1, $2, $3)",
                    &[&oid, &offset, &slice],
                )
                .await
                .map_err(|e| lo_error("source", oid, e))?
                .get(0);
            if piece.is_empty() {
                break;
            }
            tgt.query_one(
                "SELECT pg_catalog.lo_put($1, $2, $3)",
                &[&oid, &offset, &piece],
            )
            .await
            .map_err(|e| lo_error("target", oid, e))?;
            offset += piece.len() as i64;
            bytes += piece.len() as u64;
            if piece.len() < buffer_size {
                break;
            }
        }
    }
    src.end().await?;
    Ok(UnitOutcome {
        rows: oids.len() as u64,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        blocked_seconds: 0.0,
    })
}

/// Copies `unit`, whatever its kind, on stream number `stream`.
pub async fn copy_unit(
    src: &Source,
    tgt: &Target,
    unit: &CopyUnit,
    snapshot: &str,
    buffer_size: usize,
    progress: &Progress,
    stream: usize,
) -> Result<UnitOutcome> {
    if unit.kind == UnitKind::LargeObjects {
        let outcome = copy_large_objects(src, tgt, snapshot, buffer_size).await?;
        progress.unit_progress(stream, unit.kind, outcome.bytes, outcome.rows);
        Ok(outcome)
    } else {
        copy_table(src, tgt, unit, snapshot, buffer_size, progress, stream).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY stream with the given rows of (nullable) fields.
    fn binary_stream(rows: &[Vec<Option<&[u8]>>], extension: &[u8]) -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(extension.len() as u32).to_be_bytes());
        out.extend_from_slice(extension);
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for field in row {
                match field {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn binary_rows_are_counted_across_any_chunking() {
        let big = vec![7u8; 70_000];
        let rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"abc"), None, Some(b"")],
            vec![Some(&big), Some(b"\xff\xff\xff\xff")],
            vec![],
            vec![None],
        ];
        let stream = binary_stream(&rows, b"ext!");
        for chunk in [1, 2, 3, 5, 7, 64, 4096, stream.len()] {
            let mut c = RowCounter::new(true);
            assert!(!c.complete());
            for piece in stream.chunks(chunk) {
                c.feed(piece);
            }
            assert_eq!(c.rows(), 4, "chunk size {chunk}");
            assert!(c.complete(), "chunk size {chunk}");
        }
    }

    #[test]
    fn a_truncated_binary_stream_is_not_complete() {
        let stream = binary_stream(&[vec![Some(b"x")]], b"");
        let mut c = RowCounter::new(true);
        c.feed(&stream[..stream.len() - 2]);
        assert_eq!(c.rows(), 1);
        assert!(!c.complete());
    }

    #[test]
    fn text_rows_are_lines() {
        let mut c = RowCounter::new(false);
        c.feed(b"1\ta\\nb\n2\t");
        c.feed(b"\\N\n");
        assert_eq!(c.rows(), 2);
        assert!(c.complete());
    }
}
