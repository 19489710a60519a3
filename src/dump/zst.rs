//! Compressed unit files: zstd and SHA-256 on a rayon pool fed through bounded channels,
//! never on the async runtime's threads.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{Receiver, Sender};

use super::{FileCheck, WINDOW_LOG, hex};

/// A writer that hashes and counts what passes through it.
pub(super) struct Hashing<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256,
    pub(crate) bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses `pieces` at zstd `level` (window [`WINDOW_LOG`], long-distance matching)
/// into `out`; returns `out` with the compressed size and its SHA-256.
pub fn compress<W: Write>(
    out: W,
    level: i32,
    pieces: impl IntoIterator<Item = Bytes>,
) -> io::Result<(W, u64, String)> {
    let hashing = Hashing {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut encoder = zstd::Encoder::new(hashing, level)?;
    encoder.window_log(WINDOW_LOG)?;
    encoder.long_distance_matching(true)?;
    for piece in pieces {
        encoder.write_all(&piece)?;
    }
    let mut hashing = encoder.finish()?;
    hashing.flush()?;
    Ok((
        hashing.inner,
        hashing.bytes,
        hex(&hashing.hasher.finalize()),
    ))
}

/// Compresses what arrives on `rx` into `path` until the sender is dropped; returns the
/// file's size and checksum. Runs on the rayon pool.
pub(crate) fn write_compressed(
    path: &Path,
    level: i32,
    mut rx: Receiver<Bytes>,
) -> io::Result<(u64, String)> {
    let rx = std::iter::from_fn(move || rx.blocking_recv());
    let file = io::BufWriter::with_capacity(1 << 16, File::create(path)?);
    let (file, bytes, sha) = compress(file, level, rx)?;
    file.into_inner()
        .map_err(|e| io::Error::other(e.to_string()))?
        .sync_all()?;
    Ok((bytes, sha))
}

/// Decompresses `input` into pieces of `buffer_size` bytes handed to `emit` (which returns
/// false to stop early); returns the compressed size read and its SHA-256, counting every
/// byte of `input`.
pub fn decompress<R: Read>(
    input: R,
    buffer_size: usize,
    mut emit: impl FnMut(Bytes) -> bool,
) -> io::Result<(u64, String)> {
    let mut hashing = HashingReader {
        inner: input,
        hasher: Sha256::new(),
        bytes: 0,
    };
    {
        let mut decoder = zstd::Decoder::with_buffer(BufReader::new(&mut hashing))?;
        loop {
            let mut buf = BytesMut::zeroed(buffer_size);
            let mut filled = 0;
            while filled < buffer_size {
                let n = decoder.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if !emit(buf.freeze()) {
                break;
            }
        }
    }
    // Whatever the decoder did not need still belongs to the input.
    io::copy(&mut hashing, &mut io::sink())?;
    Ok((hashing.bytes, hex(&hashing.hasher.finalize())))
}

/// What a unit's reader hands the loading stream.
pub(super) enum Piece {
    Data(Bytes),
    /// The whole file was read and matched its size and checksum.
    End,
    Failed(String),
}

/// A reader that hashes and counts what passes through it.
pub(super) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Decompresses `dir/expected.file` into pieces of `buffer_size` bytes on `tx`, then says
/// whether the file was whole. Runs on the rayon pool; stops when the receiver is gone.
pub(super) fn read_compressed(
    dir: &Path,
    expected: &FileCheck,
    buffer_size: usize,
    tx: &Sender<Piece>,
) {
    let send = |piece| tx.blocking_send(piece).is_ok();
    let path = dir.join(&expected.file);
    let mut receiver_gone = false;
    let outcome = File::open(&path).and_then(|file| {
        decompress(
            BufReader::with_capacity(1 << 16, file),
            buffer_size,
            |piece| {
                receiver_gone = !send(Piece::Data(piece));
                !receiver_gone
            },
        )
    });
    if receiver_gone {
        return;
    }
    let last = match outcome {
        Err(e) => Piece::Failed(format!("{} cannot be read: {e}", path.display())),
        Ok((bytes, _)) if bytes != expected.bytes => Piece::Failed(format!(
            "{} is {bytes} bytes, the manifest says {}",
            path.display(),
            expected.bytes
        )),
        Ok((_, sha)) if sha != expected.sha256 => Piece::Failed(format!(
            "{} fails its checksum (sha256 {sha}, the manifest says {})",
            path.display(),
            expected.sha256
        )),
        Ok(_) => Piece::End,
    };
    send(last);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::DEFAULT_COMPRESS_LEVEL;

    fn stream(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn compressed_pieces_come_back_whole_in_buffers_of_the_asked_size() {
        let data = stream(1_000_003);
        let pieces: Vec<Bytes> = data.chunks(65_536).map(Bytes::copy_from_slice).collect();
        let (file, bytes, sha) = compress(Vec::new(), 3, pieces).unwrap();
        assert_eq!(bytes, file.len() as u64);
        assert!(file.len() < data.len() / 4, "{} bytes", file.len());
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        let (read, sha_read) = decompress(&file[..], 300_000, |p| {
            sizes.push(p.len());
            out.extend_from_slice(&p);
            true
        })
        .unwrap();
        assert_eq!(out, data);
        assert_eq!(sizes, [300_000, 300_000, 300_000, 100_003]);
        assert_eq!((read, sha_read), (bytes, sha));
    }

    #[test]
    fn repeats_further_apart_than_the_levels_window_are_found() {
        // 4 MiB that do not compress, twice: only a window of more than 4 MiB sees the
        // second copy as a repeat of the first.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let block: Vec<u8> = (0..4 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let pieces = [Bytes::from(block.clone()), Bytes::from(block.clone())];
        let (file, _, _) = compress(Vec::new(), DEFAULT_COMPRESS_LEVEL, pieces).unwrap();
        assert!(file.len() < block.len() * 11 / 10, "{} bytes", file.len());
        let mut out = Vec::new();
        decompress(&file[..], 1 << 20, |p| {
            out.extend_from_slice(&p);
            true
        })
        .unwrap();
        assert!(out.len() == 2 * block.len() && out[..block.len()] == block[..]);
        assert!(out[block.len()..] == block[..]);
    }

    #[test]
    fn files_of_earlier_dumps_still_decompress() {
        // Earlier versions wrote level 3 with the level's own window.
        let data = stream(700_001);
        let file = zstd::encode_all(&data[..], 3).unwrap();
        let mut out = Vec::new();
        let (read, _) = decompress(&file[..], 65_536, |p| {
            out.extend_from_slice(&p);
            true
        })
        .unwrap();
        assert_eq!(read, file.len() as u64);
        assert!(out == data);
    }

    #[test]
    fn a_changed_byte_changes_the_checksum_or_fails_decompression() {
        let (mut file, _, sha) = compress(Vec::new(), 3, [Bytes::from(stream(200_000))]).unwrap();
        let at = file.len() / 2;
        file[at] ^= 1;
        match decompress(&file[..], 65_536, |_| true) {
            Ok((_, found)) => assert_ne!(found, sha),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
