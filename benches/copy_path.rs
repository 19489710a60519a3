//! Micro-benchmarks of the copy path (`cargo bench --bench copy_path`):
//!
//! - `row_counter`: `tsxfer::copy::RowCounter` following binary COPY streams of several
//!   row shapes, fed as the driver hands them over (one CopyData message per row, which is
//!   what PostgreSQL sends) and in larger pieces; and text streams (compressed chunks).
//! - `relay`: `tsxfer::copy::Gather`, the source side of every table unit (live and
//!   dumped): every piece is counted and gathered into a `BytesMut`, which is split off
//!   and frozen into `Bytes` for the target each time it holds `--buffer-size` bytes.
//! - `relay_hashing`: the same relay at 1 MiB buffers with its checksum and without it
//!   (counting and gathering only), over realistic rows (metrics, a 136-byte event row
//!   of three integers, a timestamptz and a 100-byte text, and 354-byte wide rows).
//! - `row_hasher`: `tsxfer::copy::checksum::RowHasher`, the per-row checksum `Gather` computes
//!   of every buffer it hands on (`--verify=checksum`), over the buffers the relay hands
//!   on (256 KiB) for each row shape, and over text rows; `relay` includes it.
//! - `placeholder_rewriter`: `tsxfer::copy::NullPlaceholderRewriter` over compressed-chunk
//!   rows (one CopyData message per row), against gathering the same bytes unchanged.
//! - `offline`: what `tsxfer dump` and `tsxfer restore` do to each unit's stream besides
//!   moving it: zstd compression with SHA-256 at several levels, and decompression with
//!   the checksum, on a metrics-like stream whose values vary the way measurements do.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tsxfer::copy::checksum::RowHasher;
use tsxfer::copy::{Gather, NullPlaceholderRewriter, RowCounter};
use tsxfer::plan::{CopyUnit, UnitKind};

/// About this much COPY data per benchmarked stream.
const STREAM_BYTES: usize = 8 << 20;

/// One row's fields: a value of that many bytes, or NULL.
struct Shape {
    name: &'static str,
    fields: &'static [Option<usize>],
}

const SHAPES: &[Shape] = &[
    // bigint, int, two float8: a narrow fact table.
    Shape {
        name: "narrow_46B",
        fields: &[Some(8), Some(4), Some(8), Some(8)],
    },
    // The benchmark's metrics hypertable: timestamptz, int, float8, float8, numeric,
    // smallint and two sparse columns.
    Shape {
        name: "metrics_70B",
        fields: &[
            Some(8),
            Some(4),
            Some(8),
            Some(8),
            Some(10),
            Some(2),
            None,
            None,
        ],
    },
    // A realistic event row: bigint, two ints, timestamptz and a 100-byte text.
    Shape {
        name: "event_136B",
        fields: &[Some(8), Some(4), Some(4), Some(8), Some(100)],
    },
    // Eight 40-byte text columns.
    Shape {
        name: "wide_354B",
        fields: &[Some(40); 8],
    },
    // A TOASTed document: id, a 2 KiB text, a 32 KiB bytea.
    Shape {
        name: "toasted_34KiB",
        fields: &[Some(4), Some(2048), Some(32768)],
    },
];

fn row_bytes(shape: &Shape, seed: usize) -> Vec<u8> {
    let mut row = (shape.fields.len() as i16).to_be_bytes().to_vec();
    for (i, field) in shape.fields.iter().enumerate() {
        match field {
            None => row.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(len) => {
                row.extend_from_slice(&(*len as i32).to_be_bytes());
                row.extend((0..*len).map(|k| (seed * 31 + i * 7 + k) as u8));
            }
        }
    }
    row
}

/// A whole binary COPY stream of `shape` rows, split into the CopyData messages a
/// server sends (the header rides with the first row, the trailer comes alone).
fn binary_messages(shape: &Shape) -> (Vec<Bytes>, u64) {
    let mut header = b"PGCOPY\n\xff\r\n\0".to_vec();
    header.extend_from_slice(&0u32.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes());
    let mut messages = Vec::new();
    let mut total = header.len();
    let mut rows = 0u64;
    while total < STREAM_BYTES {
        let mut row = row_bytes(shape, rows as usize);
        if rows == 0 {
            let mut first = header.clone();
            first.append(&mut row);
            row = first;
            total -= header.len();
        }
        total += row.len();
        messages.push(Bytes::from(row));
        rows += 1;
    }
    messages.push(Bytes::from_static(&[0xff, 0xff]));
    (messages, rows)
}

/// The same bytes cut into pieces of `size` bytes, whatever the row boundaries.
fn rechunk(messages: &[Bytes], size: usize) -> Vec<Bytes> {
    let all: Vec<u8> = messages.iter().flat_map(|m| m.iter().copied()).collect();
    all.chunks(size).map(Bytes::copy_from_slice).collect()
}

fn total_len(pieces: &[Bytes]) -> u64 {
    pieces.iter().map(|p| p.len() as u64).sum()
}

fn count(pieces: &[Bytes], binary: bool) -> u64 {
    let mut counter = RowCounter::new(binary);
    for piece in pieces {
        counter.feed(black_box(piece));
    }
    assert!(counter.complete());
    counter.rows()
}

fn row_counter(c: &mut Criterion) {
    let mut group = c.benchmark_group("row_counter");
    for shape in SHAPES {
        let (messages, rows) = binary_messages(shape);
        assert_eq!(count(&messages, true), rows, "{}", shape.name);
        let pieces = [
            ("per_row", messages.clone()),
            ("8KiB", rechunk(&messages, 8 << 10)),
            ("64KiB", rechunk(&messages, 64 << 10)),
        ];
        group.throughput(Throughput::Bytes(total_len(&messages)));
        for (chunking, pieces) in &pieces {
            group.bench_with_input(
                BenchmarkId::new(shape.name, chunking),
                pieces,
                |b, pieces| b.iter(|| count(pieces, true)),
            );
        }
    }
    // Text COPY (types without binary I/O): rows are lines.
    let line =
        b"2024-01-01 00:00:00+00\t17\t\\N\tBAEAAAAAAAAAKgAAAAAAAAAAAAAAEQAAAAIAAAAAAAAAFwAA\n";
    let lines: Vec<Bytes> = (0..STREAM_BYTES / line.len())
        .map(|_| Bytes::from_static(line))
        .collect();
    group.throughput(Throughput::Bytes(total_len(&lines)));
    group.bench_with_input(BenchmarkId::new("text_76B", "per_row"), &lines, |b, l| {
        b.iter(|| count(l, false))
    });
    group.finish();
}

/// `copy_table`'s loop without the network: `tsxfer::copy::Gather` counts the rows,
/// hashes them on its hashing thread when `checksum` (`--verify checksum`), and hands a
/// frozen buffer on whenever `buffer_size` bytes are gathered (and at the end).
fn relay(pieces: &[Bytes], buffer_size: usize, checksum: bool) -> (u64, usize) {
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let unit = CopyUnit::table(1, "public".into(), "t".into(), UnitKind::Table);
            let mut gather = Gather::new(&unit, buffer_size, checksum);
            let mut handed = 0usize;
            let mut hand = async |gather: &mut Gather, end: bool| {
                while let Some((piece, rows)) = gather.ready(end) {
                    gather.hash(&piece).await.unwrap();
                    handed += 1;
                    black_box((piece, rows));
                }
            };
            for piece in pieces {
                gather.push(piece);
                hand(&mut gather, false).await;
            }
            hand(&mut gather, true).await;
            assert!(gather.check_complete(&unit, "relaying").is_ok());
            assert_eq!(gather.checksum().await.unwrap().is_some(), checksum);
            (gather.rows(), handed)
        })
    })
}

thread_local! {
    /// The runtime the relay runs on, as in tsxfer (its hashing thread is a blocking one).
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
}

fn relay_buffers(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay");
    for shape in SHAPES
        .iter()
        .filter(|s| matches!(s.name, "metrics_70B" | "toasted_34KiB"))
    {
        let (messages, rows) = binary_messages(shape);
        assert_eq!(relay(&messages, 1 << 20, true).0, rows);
        group.throughput(Throughput::Bytes(total_len(&messages)));
        for (label, size) in [
            ("64KiB", 64usize << 10),
            ("256KiB", 256 << 10),
            ("1MiB", 1 << 20),
            ("4MiB", 4 << 20),
        ] {
            group.bench_with_input(
                BenchmarkId::new(shape.name, label),
                &messages,
                |b, messages| b.iter(|| relay(messages, size, true)),
            );
        }
    }
    group.finish();
}

/// The relay with and without its checksum, at the default buffer size, over realistic
/// rows (one CopyData message per row).
fn relay_hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay_hashing");
    for shape in SHAPES
        .iter()
        .filter(|s| matches!(s.name, "metrics_70B" | "event_136B" | "wide_354B"))
    {
        let (messages, rows) = binary_messages(shape);
        assert_eq!(relay(&messages, 1 << 20, true).0, rows);
        assert_eq!(relay(&messages, 1 << 20, false).0, rows);
        group.throughput(Throughput::Bytes(total_len(&messages)));
        group.bench_with_input(
            BenchmarkId::new(shape.name, "hashed"),
            &messages,
            |b, messages| b.iter(|| relay(messages, 1 << 20, true)),
        );
        group.bench_with_input(
            BenchmarkId::new(shape.name, "unhashed"),
            &messages,
            |b, messages| b.iter(|| relay(messages, 1 << 20, false)),
        );
    }
    group.finish();
}

fn hash(pieces: &[Bytes], binary: bool) -> (u64, u128) {
    let mut hasher = RowHasher::new(binary);
    for piece in pieces {
        hasher.feed(black_box(piece));
    }
    (hasher.rows(), hasher.checksum().0)
}

fn row_hasher(c: &mut Criterion) {
    let mut group = c.benchmark_group("row_hasher");
    for shape in SHAPES {
        let (messages, rows) = binary_messages(shape);
        let buffers = rechunk(&messages, 256 << 10);
        assert_eq!(hash(&buffers, true).0, rows, "{}", shape.name);
        group.throughput(Throughput::Bytes(total_len(&buffers)));
        group.bench_with_input(
            BenchmarkId::new(shape.name, "256KiB"),
            &buffers,
            |b, buffers| b.iter(|| hash(buffers, true)),
        );
    }
    let line =
        b"2024-01-01 00:00:00+00\t17\t\\N\tBAEAAAAAAAAAKgAAAAAAAAAAAAAAEQAAAAIAAAAAAAAAFwAA\n";
    let lines: Vec<u8> = line.iter().copied().cycle().take(STREAM_BYTES).collect();
    let buffers: Vec<Bytes> = lines
        .chunks(256 << 10)
        .map(Bytes::copy_from_slice)
        .collect();
    group.throughput(Throughput::Bytes(total_len(&buffers)));
    group.bench_with_input(BenchmarkId::new("text_76B", "256KiB"), &buffers, |b, l| {
        b.iter(|| hash(l, false))
    });
    group.finish();
}

/// A binary COPY stream of metrics-like rows: a timestamp a second apart, a device id out
/// of 500, two measurements that wander, a status that rarely changes, and a NULL.
fn metrics_stream() -> Vec<Bytes> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&[0; 8]);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut temperature = 20.0f64;
    let mut row = 0i64;
    while out.len() < STREAM_BYTES {
        out.extend_from_slice(&6i16.to_be_bytes());
        let fields: [&[u8]; 5] = [
            &(800_000_000_000_000i64 + row * 1_000_000).to_be_bytes(),
            &((row % 500) as i32).to_be_bytes(),
            &{
                temperature += (next() % 200) as f64 / 1000.0 - 0.1;
                temperature
            }
            .to_be_bytes(),
            &((next() % 100_000) as f64 / 100.0).to_be_bytes(),
            &(i16::from(row % 9_973 == 0)).to_be_bytes(),
        ];
        for f in fields {
            out.extend_from_slice(&(f.len() as i32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out.extend_from_slice(&(-1i32).to_be_bytes());
        row += 1;
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.chunks(256 << 10).map(Bytes::copy_from_slice).collect()
}

fn offline(c: &mut Criterion) {
    let mut group = c.benchmark_group("offline");
    let pieces = metrics_stream();
    group.throughput(Throughput::Bytes(total_len(&pieces)));
    for level in [-1, 1, 3, 9] {
        group.bench_with_input(
            BenchmarkId::new("compress_metrics", format!("level_{level}")),
            &pieces,
            |b, pieces| {
                b.iter(|| {
                    tsxfer::dump::compress(Vec::new(), level, pieces.iter().cloned())
                        .unwrap()
                        .1
                })
            },
        );
    }
    let (file, _, _) = tsxfer::dump::compress(Vec::new(), 3, pieces.iter().cloned()).unwrap();
    eprintln!(
        "offline: the metrics stream compresses to {:.1}% at level 3",
        100.0 * file.len() as f64 / total_len(&pieces) as f64
    );
    group.bench_with_input(
        BenchmarkId::new("decompress_metrics", "level_3"),
        &file,
        |b, file| {
            b.iter(|| {
                tsxfer::dump::decompress(&file[..], 256 << 10, |p| {
                    black_box(p);
                    true
                })
                .unwrap()
                .0
            })
        },
    );
    group.finish();
}

/// A compressed chunk of the benchmark's metrics hypertable as TimescaleDB 2.19 sends
/// it: segment (int), count (int), min and max time, then six compressed columns of
/// about a kilobyte each, and two one-byte values (placeholders or not, the rewriter
/// does the same work).
const COMPRESSED_SHAPE: Shape = Shape {
    name: "compressed_6KiB",
    fields: &[
        Some(4),
        Some(4),
        Some(8),
        Some(8),
        Some(1400),
        Some(1),
        Some(1200),
        Some(1600),
        Some(1),
        Some(900),
    ],
};

fn placeholder_rewriter(c: &mut Criterion) {
    let mut group = c.benchmark_group("placeholder_rewriter");
    let (messages, _) = binary_messages(&COMPRESSED_SHAPE);
    group.throughput(Throughput::Bytes(total_len(&messages)));
    group.bench_with_input(
        BenchmarkId::new(COMPRESSED_SHAPE.name, "gather_unchanged"),
        &messages,
        |b, messages| {
            b.iter(|| {
                let mut out = BytesMut::with_capacity(STREAM_BYTES + (1 << 16));
                for m in messages {
                    out.extend_from_slice(black_box(m));
                }
                out.len()
            })
        },
    );
    group.bench_with_input(
        BenchmarkId::new(COMPRESSED_SHAPE.name, "rewrite"),
        &messages,
        |b, messages| {
            b.iter(|| {
                let mut rewriter = NullPlaceholderRewriter::new(&[4, 5, 6, 7, 8, 9], 10);
                let mut out = BytesMut::with_capacity(STREAM_BYTES + (1 << 16));
                for m in messages {
                    rewriter.push(black_box(m), &mut out);
                }
                (out.len(), rewriter.rewritten())
            })
        },
    );
    group.finish();
}

criterion_group! {
    name = copy_path;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = row_counter, relay_buffers, relay_hashing, row_hasher, placeholder_rewriter, offline
}
criterion_main!(copy_path);
