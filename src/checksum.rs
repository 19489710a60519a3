//! Checksums of rows by content: each row of a COPY stream, as COPY sends it, hashed on its
//! own (XXH3, 128 bits), and the hashes added up modulo 2^128. The sum does not depend on
//! the order the rows come in, so the source's stream and the target's rows read back
//! later compare equal when they hold the same rows; and the checksums of a table's parts
//! add up to the whole table's.

use serde::{Serialize, Serializer};
use xxhash_rust::xxh3::xxh3_128;

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

/// Where a binary stream's framing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Skip(usize),
    ExtensionLength,
    FieldCount,
    FieldLength,
    /// The current row's last value has passed: the row is whole.
    RowEnd,
    Trailer,
}

/// 11-byte signature and 4-byte flags field open every binary COPY stream.
const BINARY_HEADER_FIXED: usize = 15;

/// Hashes the rows of a COPY stream as it passes, whatever its piece boundaries: lines
/// in text format (without their newline), tuples in binary format (field count, lengths
/// and values; the header and trailer are not rows). A row split over pieces is gathered
/// before it is hashed; a row inside one piece is hashed where it lies.
#[derive(Debug, Clone)]
pub struct RowHasher {
    binary: bool,
    sum: u128,
    rows: u64,
    phase: Phase,
    after_skip: Phase,
    acc: [u8; 4],
    acc_len: usize,
    fields_left: u16,
    /// The bytes of a row begun in an earlier piece.
    carry: Vec<u8>,
    in_row: bool,
}

impl RowHasher {
    pub fn new(binary: bool) -> RowHasher {
        RowHasher {
            binary,
            sum: 0,
            rows: 0,
            phase: Phase::Skip(BINARY_HEADER_FIXED),
            after_skip: Phase::ExtensionLength,
            acc: [0; 4],
            acc_len: 0,
            fields_left: 0,
            carry: Vec::new(),
            in_row: false,
        }
    }

    /// The rows hashed so far.
    pub fn rows(&self) -> u64 {
        self.rows + u64::from(self.phase == Phase::RowEnd)
    }

    /// The checksum of the rows so far.
    pub fn checksum(&self) -> Checksum {
        if self.phase == Phase::RowEnd {
            return Checksum(self.sum.wrapping_add(xxh3_128(&self.carry)));
        }
        Checksum(self.sum)
    }

    fn add(&mut self, row: &[u8]) {
        self.sum = self.sum.wrapping_add(xxh3_128(row));
        self.rows += 1;
    }

    /// The row that began at `from` of `data` (or in an earlier piece) ends at `to`.
    fn end_row(&mut self, data: &[u8], from: Option<usize>, to: usize) {
        if self.carry.is_empty() {
            self.add(&data[from.unwrap_or(0)..to]);
        } else {
            let mut carry = std::mem::take(&mut self.carry);
            carry.extend_from_slice(&data[from.unwrap_or(0)..to]);
            self.add(&carry);
            carry.clear();
            self.carry = carry;
        }
        self.in_row = false;
    }

    pub fn feed(&mut self, data: &[u8]) {
        if self.binary {
            self.feed_binary(data);
        } else {
            self.feed_text(data);
        }
    }

    fn feed_text(&mut self, data: &[u8]) {
        let mut from = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            self.end_row(data, Some(from), end);
            from = end + 1;
        }
        self.carry.extend_from_slice(&data[from..]);
    }

    fn feed_binary(&mut self, data: &[u8]) {
        // Where the current row began in `data`; `None` while it began in an earlier
        // piece (its bytes so far are in `carry`) or no row is open.
        let mut row_from: Option<usize> = None;
        let mut at = 0;
        loop {
            if self.phase == Phase::RowEnd {
                self.end_row(data, row_from, at);
                row_from = None;
                self.phase = Phase::FieldCount;
            }
            if at == data.len() {
                break;
            }
            match self.phase {
                Phase::Trailer => return,
                Phase::RowEnd => unreachable!("handled above"),
                Phase::Skip(left) => {
                    let n = left.min(data.len() - at);
                    at += n;
                    self.phase = if n == left {
                        self.after_skip
                    } else {
                        Phase::Skip(left - n)
                    };
                }
                phase => {
                    if phase == Phase::FieldCount && self.acc_len == 0 {
                        self.in_row = true;
                        row_from = Some(at);
                    }
                    let need = if phase == Phase::FieldCount { 2 } else { 4 };
                    let take = (need - self.acc_len).min(data.len() - at);
                    self.acc[self.acc_len..self.acc_len + take]
                        .copy_from_slice(&data[at..at + take]);
                    self.acc_len += take;
                    at += take;
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
                                self.in_row = false;
                                self.carry.clear();
                                return;
                            }
                            self.fields_left = count as u16;
                            self.phase = if count == 0 {
                                Phase::RowEnd
                            } else {
                                Phase::FieldLength
                            };
                        }
                        _ => {
                            let len = i32::from_be_bytes(self.acc);
                            self.fields_left -= 1;
                            let next = if self.fields_left == 0 {
                                Phase::RowEnd
                            } else {
                                Phase::FieldLength
                            };
                            self.skip_then(len.max(0) as usize, next);
                        }
                    }
                }
            }
        }
        if self.in_row {
            self.carry
                .extend_from_slice(&data[row_from.unwrap_or(0)..data.len()]);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&3u32.to_be_bytes());
        out.extend_from_slice(b"ext");
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
}
