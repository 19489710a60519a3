//! Checksums of rows by content: each row of a COPY stream, as COPY sends it, hashed on its
//! own (XXH3, 128 bits), and the hashes added up modulo 2^128. The sum does not depend on
//! the order the rows come in, so the source's stream and the target's rows read back
//! later compare equal when they hold the same rows; and the checksums of a table's parts
//! add up to the whole table's.

use bytes::Bytes;
use serde::{Serialize, Serializer};
use xxhash_rust::xxh3::xxh3_128;

use crate::copy::framing::{CopyFraming, FramingVisitor};
use crate::error::{Error, ErrorKind, Result};

/// Session settings, for this transaction, under which every server writes a value in
/// text COPY the same way (dates, intervals, time zones, floats, bytea), so that a text
/// unit's rows read from the source and read back from the target compare by bytes. A
/// value written so reads back the same on any server.
pub const TEXT_SETTINGS: &str = "SELECT pg_catalog.set_config('DateStyle', 'ISO, YMD', true), \
     pg_catalog.set_config('IntervalStyle', 'postgres', true), \
     pg_catalog.set_config('TimeZone', 'UTC', true), \
     pg_catalog.set_config('extra_float_digits', '1', true), \
     pg_catalog.set_config('bytea_output', 'hex', true)";

/// The order-independent checksum of a set of rows (0 for none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Checksum(pub u128);

impl Checksum {
    /// The checksum of the rows of `self` and of `other` together.
    pub fn plus(self, other: Checksum) -> Checksum {
        Checksum(self.0.wrapping_add(other.0))
    }

    /// 32 hexadecimal digits.
    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }

    /// Reads [`Checksum::hex`] back.
    pub fn from_hex(text: &str) -> Option<Checksum> {
        if text.len() != 32 {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(Checksum)
    }

    /// The high and low 64 bits, as two `int8` values for the run state.
    pub fn to_parts(self) -> (i64, i64) {
        ((self.0 >> 64) as u64 as i64, self.0 as u64 as i64)
    }

    pub fn from_parts(high: i64, low: i64) -> Checksum {
        Checksum(((high as u64 as u128) << 64) | low as u64 as u128)
    }
}

impl Serialize for Checksum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Checksum, D::Error> {
        let text = String::deserialize(d)?;
        Checksum::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("a checksum is 32 hexadecimal digits"))
    }
}

/// Hashes the rows of a COPY stream as it passes, whatever its piece boundaries: lines
/// in text format (without their newline), tuples in binary format (field count, lengths
/// and values; the header and trailer are not rows). A row split over pieces is gathered
/// before it is hashed; a row inside one piece is hashed where it lies.
#[derive(Debug, Clone)]
pub struct RowHasher {
    framing: CopyFraming,
    sums: RowSums,
}

/// What a [`RowHasher`] keeps between pieces.
#[derive(Debug, Clone, Default)]
struct RowSums {
    sum: u128,
    rows: u64,
    /// The bytes of a row begun in an earlier piece.
    carry: Vec<u8>,
    in_row: bool,
}

/// A [`RowSums`] following one piece.
struct HashPiece<'a> {
    sums: &'a mut RowSums,
    data: &'a [u8],
    /// Where the current row began in `data`; `None` while it began in an earlier piece
    /// (its bytes so far are in `carry`) or no row is open.
    from: Option<usize>,
}

impl FramingVisitor for HashPiece<'_> {
    fn tuple_start(&mut self, at: usize) {
        self.from = Some(at);
        self.sums.in_row = true;
    }

    fn row_end(&mut self, at: usize) {
        let row = &self.data[self.from.unwrap_or(0)..at];
        let sums = &mut *self.sums;
        let hash = if sums.carry.is_empty() {
            xxh3_128(row)
        } else {
            sums.carry.extend_from_slice(row);
            let hash = xxh3_128(&sums.carry);
            sums.carry.clear();
            hash
        };
        sums.sum = sums.sum.wrapping_add(hash);
        sums.rows += 1;
        sums.in_row = false;
        self.from = None;
    }

    fn trailer(&mut self) {
        self.sums.in_row = false;
        self.sums.carry.clear();
        self.from = None;
    }
}

impl RowHasher {
    pub fn new(binary: bool) -> RowHasher {
        RowHasher {
            framing: CopyFraming::new(binary),
            sums: RowSums::default(),
        }
    }

    /// The rows hashed so far.
    pub fn rows(&self) -> u64 {
        self.sums.rows
    }

    /// The checksum of the rows so far.
    pub fn checksum(&self) -> Checksum {
        Checksum(self.sums.sum)
    }

    pub fn feed(&mut self, data: &[u8]) {
        let mut piece = HashPiece {
            sums: &mut self.sums,
            data,
            from: None,
        };
        self.framing.feed(data, &mut piece);
        let from = piece.from.unwrap_or(0);
        if self.sums.in_row {
            self.sums.carry.extend_from_slice(&data[from..]);
        }
    }
}

/// Buffers a [`HasherThread`] holds at most before the relay waits for it.
const HASH_QUEUE: usize = 4;

/// A [`RowHasher`] on a blocking thread of its own, fed the buffers the relay hands on
/// over a bounded channel: hashing never runs on the async runtime's threads, and holds
/// at most [`HASH_QUEUE`] buffers (cheap clones of those the target gets).
pub struct HasherThread {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    done: tokio::task::JoinHandle<RowHasher>,
}

impl HasherThread {
    /// Starts hashing the rows of a binary (or text) COPY stream.
    pub fn start(binary: bool) -> HasherThread {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
        let done = tokio::task::spawn_blocking(move || {
            let mut hasher = RowHasher::new(binary);
            while let Some(piece) = rx.blocking_recv() {
                hasher.feed(&piece);
            }
            hasher
        });
        HasherThread { tx, done }
    }

    /// Hands `piece` to the thread, waiting while it is [`HASH_QUEUE`] buffers behind.
    pub async fn feed(&self, piece: Bytes) -> Result<()> {
        self.tx.send(piece).await.map_err(|_| stopped())
    }

    /// The hasher, once it has hashed everything fed.
    pub async fn finish(self) -> Result<RowHasher> {
        drop(self.tx);
        self.done.await.map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::new(ErrorKind::Internal, "a row-hashing thread stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        crate::copy::framing::tests::binary_stream(rows, b"ext")
    }

    fn hash_in_pieces(stream: &[u8], binary: bool, size: usize) -> (Checksum, u64) {
        let mut h = RowHasher::new(binary);
        for piece in stream.chunks(size) {
            h.feed(piece);
        }
        (h.checksum(), h.rows())
    }

    #[test]
    fn the_checksum_is_the_same_whatever_the_pieces_and_the_row_order() {
        let big = vec![9u8; 5000];
        let rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"abc"), None, Some(b"")],
            vec![Some(&big), Some(b"x")],
            vec![],
            vec![None, None, Some(b"\x00\x01")],
        ];
        let stream = binary_stream(&rows);
        let whole = hash_in_pieces(&stream, true, stream.len());
        assert_eq!(whole.1, 4);
        for size in [1, 2, 3, 5, 7, 13, 64, 4096] {
            assert_eq!(
                hash_in_pieces(&stream, true, size),
                whole,
                "pieces of {size}"
            );
        }
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(
            hash_in_pieces(&binary_stream(&reversed), true, 7),
            whole,
            "order does not count"
        );
    }

    #[test]
    fn any_changed_moved_or_swapped_byte_changes_the_checksum() {
        let a = binary_stream(&[vec![Some(b"ab"), Some(b"c")], vec![Some(b"d"), None]]);
        let (base, _) = hash_in_pieces(&a, true, a.len());
        let changed = binary_stream(&[vec![Some(b"ab"), Some(b"e")], vec![Some(b"d"), None]]);
        let moved = binary_stream(&[vec![Some(b"a"), Some(b"bc")], vec![Some(b"d"), None]]);
        let swapped = binary_stream(&[vec![Some(b"ab"), Some(b"d")], vec![Some(b"c"), None]]);
        let nulled = binary_stream(&[vec![Some(b"ab"), Some(b"c")], vec![Some(b"d"), Some(b"")]]);
        for other in [changed, moved, swapped, nulled] {
            assert_ne!(hash_in_pieces(&other, true, 3).0, base);
        }
    }

    #[test]
    fn parts_add_up_to_the_whole() {
        let r1: Vec<Option<&[u8]>> = vec![Some(b"1")];
        let r2: Vec<Option<&[u8]>> = vec![Some(b"2")];
        let whole = hash_in_pieces(&binary_stream(&[r1.clone(), r2.clone()]), true, 5).0;
        let one = hash_in_pieces(&binary_stream(&[r1]), true, 5).0;
        let two = hash_in_pieces(&binary_stream(&[r2]), true, 5).0;
        assert_eq!(one.plus(two), whole);
        assert_eq!(Checksum::default().plus(whole), whole);
    }

    #[test]
    fn text_rows_are_lines_whatever_the_pieces() {
        let stream = b"1\ta\\nb\n2\t\\N\n\n3\tlong line here\n";
        let whole = hash_in_pieces(stream, false, stream.len());
        assert_eq!(whole.1, 4);
        for size in 1..10 {
            assert_eq!(
                hash_in_pieces(stream, false, size),
                whole,
                "pieces of {size}"
            );
        }
        let swapped = b"2\t\\N\n3\tlong line here\n1\ta\\nb\n\n";
        assert_eq!(hash_in_pieces(swapped, false, 4), whole);
        assert_ne!(hash_in_pieces(b"1\ta\\nc\n", false, 4).0, whole.0);
    }

    #[test]
    fn checksums_survive_their_stored_forms() {
        let c = Checksum(0x8000_0000_0000_0001_ffff_ffff_ffff_fffe);
        let (h, l) = c.to_parts();
        assert_eq!(Checksum::from_parts(h, l), c);
        assert_eq!(Checksum::from_hex(&c.hex()), Some(c));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Checksum>(&json).unwrap(), c);
        assert_eq!(Checksum::from_hex("xyz"), None);
    }

    #[tokio::test]
    async fn the_hashing_thread_gives_what_hashing_in_place_gives() {
        let rows: Vec<Vec<Option<&[u8]>>> = (0..500u32)
            .map(|i| vec![Some(&b"abcdefgh"[..(i % 8) as usize]), None])
            .collect();
        let stream = binary_stream(&rows);
        let mut inline = RowHasher::new(true);
        inline.feed(&stream);
        let thread = HasherThread::start(true);
        for piece in stream.chunks(37) {
            thread.feed(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        let hashed = thread.finish().await.unwrap();
        assert_eq!(hashed.rows(), 500);
        assert_eq!(hashed.checksum(), inline.checksum());
    }
}
