//! The framing of a COPY stream, followed as it passes, whatever its piece boundaries,
//! without decoding values: one parser ([`CopyFraming`]) that tells a [`FramingVisitor`]
//! where rows, fields and values begin and end in each piece. The row counter, the
//! placeholder rewriter and the row hasher are visitors of it.
//!
//! Binary format: a fixed header and an extension area, then tuples (a 16-bit field
//! count, then per field a 32-bit length, -1 for NULL, and that many bytes), then a
//! field count of -1 as trailer. Text format: a row is a line.

/// What a [`CopyFraming`] reports, with positions in the piece being fed (a thing that
/// began in an earlier piece is reported there, not again).
pub trait FramingVisitor {
    /// A tuple's field count (a row's, or the trailer's) begins at `at`.
    fn tuple_start(&mut self, _at: usize) {}
    /// The tuple is a row of `fields` fields (text format: a line ends).
    fn row_begin(&mut self, _fields: usize) {}
    /// Field `field`'s length word begins at `at`.
    fn field_start(&mut self, _field: usize, _at: usize) {}
    /// Field `field`'s length is `len` (negative: NULL); its value begins at `at`.
    fn field_length(&mut self, _field: usize, _len: i32, _at: usize) {}
    /// `bytes` of field `field`'s value, which lie at `at`.
    fn value(&mut self, _field: usize, _bytes: &[u8], _at: usize) {}
    /// The row ends before `at` (text format: at its newline).
    fn row_end(&mut self, _at: usize) {}
    /// The trailer came: nothing after it is framed.
    fn trailer(&mut self) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Bytes of the fixed header still to pass.
    Header(usize),
    ExtensionLength,
    Extension(usize),
    FieldCount,
    FieldLength,
    /// Bytes of the current value still to pass.
    Value(usize),
    Trailer,
    /// Text format, before its first piece.
    TextStart,
    Text,
}

/// 11-byte signature and 4-byte flags field open every binary COPY stream.
const BINARY_HEADER_FIXED: usize = 15;

/// Where a COPY stream's framing stands between pieces.
#[derive(Debug, Clone)]
pub struct CopyFraming {
    phase: Phase,
    /// A length word or field count split over pieces.
    acc: [u8; 4],
    acc_len: usize,
    /// The field the next length word belongs to, and how many the row has.
    field: usize,
    fields: usize,
}

impl CopyFraming {
    pub fn new(binary: bool) -> CopyFraming {
        CopyFraming {
            phase: if binary {
                Phase::Header(BINARY_HEADER_FIXED)
            } else {
                Phase::TextStart
            },
            acc: [0; 4],
            acc_len: 0,
            field: 0,
            fields: 0,
        }
    }

    /// A binary stream is whole once its trailer has been seen (a text stream always).
    pub fn complete(&self) -> bool {
        matches!(self.phase, Phase::Trailer | Phase::Text | Phase::TextStart)
    }

    /// Follows `data`, the next piece of the stream, telling `v` what is in it.
    #[inline]
    pub fn feed<V: FramingVisitor>(&mut self, data: &[u8], v: &mut V) {
        match self.phase {
            Phase::TextStart => {
                self.phase = Phase::Text;
                v.tuple_start(0);
                self.feed_text(data, v);
            }
            Phase::Text => self.feed_text(data, v),
            _ => self.feed_binary(data, v),
        }
    }

    fn feed_text<V: FramingVisitor>(&mut self, data: &[u8], v: &mut V) {
        for end in memchr::memchr_iter(b'\n', data) {
            v.row_begin(0);
            v.row_end(end);
            v.tuple_start(end + 1);
        }
    }

    fn feed_binary<V: FramingVisitor>(&mut self, data: &[u8], v: &mut V) {
        let mut at = 0;
        while at < data.len() {
            match self.phase {
                Phase::Trailer => return,
                Phase::Text | Phase::TextStart => unreachable!("a binary stream"),
                Phase::Header(left) => {
                    let n = left.min(data.len() - at);
                    at += n;
                    self.phase = if n == left {
                        Phase::ExtensionLength
                    } else {
                        Phase::Header(left - n)
                    };
                }
                Phase::Extension(left) => {
                    let n = left.min(data.len() - at);
                    at += n;
                    self.phase = if n == left {
                        Phase::FieldCount
                    } else {
                        Phase::Extension(left - n)
                    };
                }
                Phase::Value(left) => {
                    let n = left.min(data.len() - at);
                    v.value(self.field, &data[at..at + n], at);
                    at += n;
                    if n == left {
                        self.value_done(at, v);
                    } else {
                        self.phase = Phase::Value(left - n);
                    }
                }
                phase => {
                    if self.acc_len == 0 {
                        match phase {
                            Phase::FieldCount => v.tuple_start(at),
                            Phase::FieldLength => v.field_start(self.field, at),
                            _ => {}
                        }
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
                            self.phase = if len == 0 {
                                Phase::FieldCount
                            } else {
                                Phase::Extension(len)
                            };
                        }
                        Phase::FieldCount => {
                            let count = i16::from_be_bytes([self.acc[0], self.acc[1]]);
                            if count < 0 {
                                self.phase = Phase::Trailer;
                                v.trailer();
                                return;
                            }
                            self.field = 0;
                            self.fields = count as usize;
                            v.row_begin(self.fields);
                            if count == 0 {
                                v.row_end(at);
                            } else {
                                self.phase = Phase::FieldLength;
                            }
                        }
                        _ => {
                            let len = i32::from_be_bytes(self.acc);
                            v.field_length(self.field, len, at);
                            if len > 0 {
                                self.phase = Phase::Value(len as usize);
                            } else {
                                self.value_done(at, v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The current field's value ended at `at`: on to the next field or row.
    fn value_done<V: FramingVisitor>(&mut self, at: usize, v: &mut V) {
        self.field += 1;
        if self.field == self.fields {
            v.row_end(at);
            self.phase = Phase::FieldCount;
        } else {
            self.phase = Phase::FieldLength;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A binary COPY stream with the given rows of (nullable) fields.
    pub(crate) fn binary_stream(rows: &[Vec<Option<&[u8]>>], extension: &[u8]) -> Vec<u8> {
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

    /// Cuts `len` bytes at pseudo-random places (pieces of 1 to `max` bytes), the same
    /// for the same `seed`.
    pub(crate) fn random_cuts(len: usize, max: usize, seed: u64) -> Vec<std::ops::Range<usize>> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut from = 0;
        let mut out = Vec::new();
        while from < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let size = 1 + (state % max as u64) as usize;
            let to = (from + size).min(len);
            out.push(from..to);
            from = to;
        }
        out
    }

    /// Every event, with positions made absolute in the stream.
    #[derive(Default)]
    struct Events {
        base: usize,
        seen: Vec<String>,
    }

    impl FramingVisitor for Events {
        fn tuple_start(&mut self, at: usize) {
            self.seen.push(format!("tuple@{}", self.base + at));
        }
        fn row_begin(&mut self, fields: usize) {
            self.seen.push(format!("row {fields}"));
        }
        fn field_start(&mut self, field: usize, at: usize) {
            self.seen.push(format!("field {field}@{}", self.base + at));
        }
        fn field_length(&mut self, field: usize, len: i32, at: usize) {
            self.seen
                .push(format!("length {field}={len}@{}", self.base + at));
        }
        fn value(&mut self, field: usize, bytes: &[u8], at: usize) {
            // Pieces of one value are joined, so that any cutting reads the same.
            let start = self.base + at;
            if let Some(last) = self.seen.last_mut()
                && let Some(rest) = last.strip_prefix(&format!("value {field} "))
                && let Some((from, to)) = rest.split_once("..")
                && to.parse::<usize>() == Ok(start)
            {
                *last = format!("value {field} {from}..{}", start + bytes.len());
                return;
            }
            self.seen
                .push(format!("value {field} {start}..{}", start + bytes.len()));
        }
        fn row_end(&mut self, at: usize) {
            self.seen.push(format!("end@{}", self.base + at));
        }
        fn trailer(&mut self) {
            self.seen.push("trailer".into());
        }
    }

    fn events(stream: &[u8], binary: bool, cuts: &[std::ops::Range<usize>]) -> Vec<String> {
        let mut framing = CopyFraming::new(binary);
        let mut events = Events::default();
        for cut in cuts {
            events.base = cut.start;
            framing.feed(&stream[cut.clone()], &mut events);
        }
        events.seen
    }

    #[test]
    fn events_are_the_same_whatever_the_pieces() {
        let big = vec![3u8; 3000];
        let stream = binary_stream(
            &[vec![Some(b"ab"), None, Some(b"")], vec![], vec![Some(&big)]],
            b"xt",
        );
        let whole = events(&stream, true, std::slice::from_ref(&(0..stream.len())));
        // Header 15 bytes, extension length 4 and 2 bytes: the first tuple at 21.
        assert_eq!(
            whole[..6],
            [
                "tuple@21",
                "row 3",
                "field 0@23",
                "length 0=2@27",
                "value 0 27..29",
                "field 1@29"
            ]
        );
        assert_eq!(whole.last().map(String::as_str), Some("trailer"));
        assert_eq!(whole.iter().filter(|e| e.starts_with("end@")).count(), 3);
        for seed in 1..50 {
            let cuts = random_cuts(stream.len(), 1 + seed as usize * 7, seed);
            assert_eq!(events(&stream, true, &cuts), whole, "seed {seed}");
        }
    }

    #[test]
    fn text_rows_are_lines() {
        let stream = b"a\tb\n\nc\n";
        assert_eq!(
            events(stream, false, &[0..3, 3..5, 5..7]),
            [
                "tuple@0", "row 0", "end@3", "tuple@4", "row 0", "end@4", "tuple@5", "row 0",
                "end@6", "tuple@7"
            ]
        );
        assert!(CopyFraming::new(false).complete());
    }
}
