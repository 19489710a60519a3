//! What the relay does to rows as they pass, following the binary COPY framing
//! ([`crate::copy::framing`]) without decoding values: counting them, and turning
//! TimescaleDB's "all values NULL" placeholder into NULL.

use bytes::BytesMut;

use crate::copy::framing::{CopyFraming, FramingVisitor};

/// Counts the rows of a COPY stream as it passes, whatever the chunk boundaries: lines in
/// text format, tuples in binary format (whose framing it follows without decoding values).
#[derive(Debug, Clone)]
pub struct RowCounter {
    framing: CopyFraming,
    rows: Rows,
}

/// A [`FramingVisitor`] that counts rows.
#[derive(Debug, Clone, Copy, Default)]
struct Rows(u64);

impl FramingVisitor for Rows {
    #[inline]
    fn row_begin(&mut self, _fields: usize) {
        self.0 += 1;
    }
}

impl RowCounter {
    pub fn new(binary: bool) -> RowCounter {
        RowCounter {
            framing: CopyFraming::new(binary),
            rows: Rows::default(),
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows.0
    }

    /// A binary stream is whole once its trailer has been seen.
    pub fn complete(&self) -> bool {
        self.framing.complete()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.framing.feed(data, &mut self.rows);
    }
}

/// TimescaleDB's "every value of this batch is NULL" compressed value, as its send
/// function writes it: the algorithm number alone (`COMPRESSION_ALGORITHM_NULL`).
const NULL_PLACEHOLDER: u8 = 6;

/// Turns TimescaleDB's one-byte "all values NULL" placeholder into SQL NULL in chosen
/// columns of a binary COPY stream, as the stream passes, whatever its chunk boundaries.
/// TimescaleDB 2.19 writes that placeholder but its receive function cannot load it
/// (timescaledb#8893); it reads a NULL there as the same thing. Everything else is
/// copied through unchanged: the framing is followed, values are not decoded.
#[derive(Debug, Clone)]
pub struct NullPlaceholderRewriter {
    framing: CopyFraming,
    state: Rewrite,
}

/// What a [`NullPlaceholderRewriter`] keeps between pieces.
#[derive(Debug, Clone)]
struct Rewrite {
    /// Per field position: whether it is a compressed_data column.
    columns: Vec<bool>,
    /// A length word of a rewritten column is being held back (not yet written out).
    held: bool,
    /// The held length is 1: the value's byte decides what is written.
    one_byte: bool,
    rewritten: u64,
}

/// A [`Rewrite`] turning one piece into `out`.
struct RewritePiece<'a> {
    state: &'a mut Rewrite,
    input: &'a [u8],
    out: &'a mut BytesMut,
    /// Bytes of `input` from here on are passed through unless held.
    run: usize,
}

impl FramingVisitor for RewritePiece<'_> {
    #[inline]
    fn field_start(&mut self, field: usize, at: usize) {
        if self.state.columns.get(field).copied().unwrap_or(false) {
            self.out.extend_from_slice(&self.input[self.run..at]);
            self.state.held = true;
        }
    }

    #[inline]
    fn field_length(&mut self, _field: usize, len: i32, at: usize) {
        if !self.state.held {
            return;
        }
        if len == 1 {
            self.state.one_byte = true;
        } else {
            self.out.extend_from_slice(&len.to_be_bytes());
            self.state.held = false;
            self.run = at;
        }
    }

    #[inline]
    fn value(&mut self, _field: usize, bytes: &[u8], at: usize) {
        if !self.state.one_byte {
            return;
        }
        let value = bytes[0];
        if value == NULL_PLACEHOLDER {
            self.out.extend_from_slice(&(-1i32).to_be_bytes());
            self.state.rewritten += 1;
        } else {
            self.out.extend_from_slice(&1i32.to_be_bytes());
            self.out.extend_from_slice(&[value]);
        }
        self.state.one_byte = false;
        self.state.held = false;
        self.run = at + 1;
    }
}

impl NullPlaceholderRewriter {
    /// `columns` are the positions (from 0, in the COPY column list) of the
    /// compressed_data columns; `width` is the number of columns.
    pub fn new(columns: &[usize], width: usize) -> NullPlaceholderRewriter {
        let mut rewrite = vec![false; width];
        for &c in columns {
            if c < width {
                rewrite[c] = true;
            }
        }
        NullPlaceholderRewriter {
            framing: CopyFraming::new(true),
            state: Rewrite {
                columns: rewrite,
                held: false,
                one_byte: false,
                rewritten: 0,
            },
        }
    }

    /// How many placeholders became NULL so far.
    pub fn rewritten(&self) -> u64 {
        self.state.rewritten
    }

    /// Appends to `out` what `input` becomes. A length field of a rewritten column is
    /// held back until its value is known, so `out` may lag `input` by up to 5 bytes.
    pub fn push(&mut self, input: &[u8], out: &mut BytesMut) {
        let mut piece = RewritePiece {
            state: &mut self.state,
            input,
            out,
            run: 0,
        };
        self.framing.feed(input, &mut piece);
        if !piece.state.held {
            let run = piece.run;
            piece.out.extend_from_slice(&input[run..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::checksum::RowHasher;
    use crate::copy::framing::tests::{binary_stream, random_cuts};

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

    /// Runs `stream` through a rewriter of `columns` (of 3), cut at `cuts`.
    fn rewrite(stream: &[u8], columns: &[usize], cuts: &[usize]) -> (Vec<u8>, u64) {
        let mut r = NullPlaceholderRewriter::new(columns, 3);
        let mut out = BytesMut::new();
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            r.push(&stream[from..cut], &mut out);
            from = cut;
        }
        (out.to_vec(), r.rewritten())
    }

    #[test]
    fn placeholders_become_null_in_chosen_columns_at_every_chunk_boundary() {
        let big = vec![NULL_PLACEHOLDER; 300];
        let ph: &[u8] = &[NULL_PLACEHOLDER];
        let input_rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"\x01\x02"), Some(ph), Some(ph)],
            vec![None, Some(&[5]), Some(b"")],
            vec![Some(ph), Some(&big), None],
            vec![Some(&[NULL_PLACEHOLDER, 0]), Some(ph), Some(ph)],
        ];
        // Columns 1 and 2 are compressed_data: their placeholders go, column 0's stays.
        let expected_rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"\x01\x02"), None, None],
            vec![None, Some(&[5]), Some(b"")],
            vec![Some(ph), Some(&big), None],
            vec![Some(&[NULL_PLACEHOLDER, 0]), None, None],
        ];
        let input = binary_stream(&input_rows, b"ext");
        let expected = binary_stream(&expected_rows, b"ext");
        for cut in 0..=input.len() {
            assert_eq!(
                rewrite(&input, &[1, 2], &[cut]),
                (expected.clone(), 4),
                "one cut at {cut}"
            );
        }
        for size in 1..=9 {
            let cuts: Vec<usize> = (size..input.len()).step_by(size).collect();
            assert_eq!(
                rewrite(&input, &[1, 2], &cuts),
                (expected.clone(), 4),
                "pieces of {size}"
            );
        }
        let mut counter = RowCounter::new(true);
        counter.feed(&expected);
        assert_eq!(counter.rows(), 4);
        assert!(counter.complete());
    }

    #[test]
    fn a_stream_without_placeholders_passes_unchanged() {
        let stream = binary_stream(&[vec![Some(b"a"), Some(b"bc"), None], vec![]], b"");
        for cut in 0..=stream.len() {
            assert_eq!(rewrite(&stream, &[0, 1, 2], &[cut]), (stream.clone(), 0));
        }
        assert_eq!(
            rewrite(
                &binary_stream(&[vec![Some(&[NULL_PLACEHOLDER])]], b""),
                &[],
                &[]
            ),
            (binary_stream(&[vec![Some(&[NULL_PLACEHOLDER])]], b""), 0)
        );
    }
    #[test]
    fn counter_rewriter_and_hasher_agree_whatever_the_pieces() {
        let big = vec![NULL_PLACEHOLDER; 9000];
        let ph: &[u8] = &[NULL_PLACEHOLDER];
        let (ab, seven, empty): (&[u8], &[u8], &[u8]) = (b"\x01\x02", &[7], b"");
        let rows: Vec<Vec<Option<&[u8]>>> = (0..40)
            .map(|i| match i % 4 {
                0 => vec![Some(ab), Some(ph), Some(ph)],
                1 => vec![None, Some(&big[..]), Some(seven)],
                2 => vec![Some(ph), None, Some(empty)],
                _ => vec![],
            })
            .collect();
        let input = binary_stream(&rows, b"ext");
        let whole = {
            let mut out = BytesMut::new();
            let mut r = NullPlaceholderRewriter::new(&[1, 2], 3);
            r.push(&input, &mut out);
            (out.to_vec(), r.rewritten())
        };
        assert_eq!(whole.1, 20);
        let mut reference = RowHasher::new(true);
        reference.feed(&whole.0);
        assert_eq!(reference.rows(), 40);
        for seed in 1..40u64 {
            let cuts = random_cuts(input.len(), 1 + seed as usize * 97, seed);
            let mut counter = RowCounter::new(true);
            let mut rewriter = NullPlaceholderRewriter::new(&[1, 2], 3);
            let mut out = BytesMut::new();
            for cut in &cuts {
                counter.feed(&input[cut.clone()]);
                rewriter.push(&input[cut.clone()], &mut out);
            }
            assert_eq!(counter.rows(), 40, "seed {seed}");
            assert!(counter.complete(), "seed {seed}");
            assert_eq!((out.to_vec(), rewriter.rewritten()), whole, "seed {seed}");
            let mut hasher = RowHasher::new(true);
            for cut in random_cuts(out.len(), 1 + seed as usize * 31, seed + 1000) {
                hasher.feed(&out[cut]);
            }
            assert_eq!(hasher.rows(), 40, "seed {seed}");
            assert_eq!(hasher.checksum(), reference.checksum(), "seed {seed}");
        }
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
