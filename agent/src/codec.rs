//! zstd on the copy path: a file is compressed as it streams to the backup
//! and decompressed as it streams back, one zstd frame per file, with its
//! content checksum. Memory is a zstd context (a few MiB at the levels
//! allowed) and one chunk per file in flight, whatever the file's size.
//!
//! Many MatrixOne objects barely shrink (their column blocks are already
//! LZ4-compressed), so a file is probed first: its first [`PROBE`] bytes
//! are compressed and flushed, and if they did not shrink to [`KEEP_RATIO`]
//! the encoder is dropped and the file is stored raw, the probe's bytes
//! first. The probe's output is the start of the frame, so nothing is
//! compressed twice. A file whose whole frame still ends up no smaller than
//! the file is rewritten raw by the caller.

use std::io;

use bytes::Bytes;
use futures::StreamExt;
use mo_br_storage::{ByteStream, Error as StorageError};
use zstd::stream::raw::{CParameter, Decoder, Encoder, InBuffer, Operation, OutBuffer};

/// Bytes compressed before deciding whether a file is worth compressing.
pub const PROBE: usize = 1 << 20;
/// A probe must shrink to this fraction of its size, or the file is raw:
/// saving less than 1/16 is not worth the CPU on both ends.
pub const KEEP_RATIO: f64 = 15.0 / 16.0;
/// Caps on a streaming encoder's tables: one context per file in flight,
/// so their size times the parallelism is the agent's memory. Level 3's
/// own (2 MiB window) are below them; at level 19 zstd would take an 8 MiB
/// window, a 64 MiB chain table and a 16 MiB hash table (~90 MiB a file),
/// capped here to ~14 MiB for a few percent of ratio.
const BOUNDS: [CParameter; 3] = [
    CParameter::WindowLog(WINDOW_LOG),
    CParameter::ChainLog(21),
    CParameter::HashLog(20),
];
const WINDOW_LOG: u32 = 21;
/// The largest window a frame may ask of the decoder: what frames written
/// before [`BOUNDS`] used at level 19 (8 MiB). zstd's own limit (128 MiB)
/// would let a damaged header claim that much per file in flight.
const MAX_DECODE_WINDOW_LOG: u32 = 23;
/// Decompressed chunk size: bounds what one input chunk can expand to.
const OUT_CHUNK: usize = 256 << 10;

/// A decoding failure: the stored bytes are not the frame that was written.
/// An `InvalidData` I/O error, which the shard reports as corrupt.
pub fn corrupt(name: &str, detail: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: name.to_string(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("stored zstd frame is damaged: {detail}"),
        ),
    }
}

/// Whether `e` is a damaged frame (see [`corrupt`]), not a transient error.
pub fn is_corrupt(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::InvalidData)
}

fn encoder_error(name: &str, e: io::Error) -> StorageError {
    StorageError::Io {
        path: name.to_string(),
        source: io::Error::other(format!("zstd: {e}")),
    }
}

/// What the probe found.
pub enum Probed {
    /// Not worth compressing: the file as read so far, then the rest, raw.
    Raw(ByteStream),
    /// The zstd frame of the file, as it streams.
    Zstd(ByteStream),
}

/// Reads up to [`PROBE`] bytes of `body` and decides; `name` names the
/// file in errors. A file that ends within the probe is compressed in one
/// call that knows its size, so zstd sizes its tables to the file (many
/// MatrixOne files are a few KiB: a context sized for megabytes would cost
/// more than the file).
pub async fn probe(mut body: ByteStream, level: i32, name: &str) -> Result<Probed, StorageError> {
    let mut read = Vec::new();
    let mut read_len = 0usize;
    let mut ended = false;
    while read_len < PROBE {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk?;
                read_len += chunk.len();
                read.push(chunk);
            }
            None => {
                ended = true;
                break;
            }
        }
    }
    let worth = |out: usize| (out as f64) <= read_len as f64 * KEEP_RATIO;
    let raw = |read: Vec<Bytes>, body: ByteStream| -> Probed {
        let head = futures::stream::iter(read.into_iter().map(Ok));
        Probed::Raw(Box::pin(head.chain(body)))
    };
    if ended {
        let frame = compress_whole(&read.concat(), level).map_err(|e| encoder_error(name, e))?;
        if !worth(frame.len()) {
            return Ok(raw(read, body));
        }
        return Ok(Probed::Zstd(Box::pin(futures::stream::iter([Ok(
            Bytes::from(frame),
        )]))));
    }
    let mut enc = Encoder::new(level).map_err(|e| encoder_error(name, e))?;
    for p in BOUNDS {
        enc.set_parameter(p).map_err(|e| encoder_error(name, e))?;
    }
    // The frame carries an XXH64 of the content: a damaged object fails to
    // decode even where the manifest's sha256 is not at hand.
    enc.set_parameter(CParameter::ChecksumFlag(true))
        .map_err(|e| encoder_error(name, e))?;
    let mut out = Vec::new();
    for chunk in &read {
        compress_into(&mut enc, chunk, &mut out).map_err(|e| encoder_error(name, e))?;
    }
    flush_into(&mut enc, &mut out).map_err(|e| encoder_error(name, e))?;
    if !worth(out.len()) {
        return Ok(raw(read, body));
    }
    let head = futures::stream::iter([Ok(Bytes::from(out))]);
    Ok(Probed::Zstd(Box::pin(head.chain(compress_rest(
        body,
        enc,
        name.to_string(),
    )))))
}

/// One frame of `data`, with its size and checksum in the header.
fn compress_whole(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.set_parameter(CParameter::ChecksumFlag(true))?;
    c.compress(data)
}

/// The rest of a frame: each chunk of `body` through `enc`, then its end.
fn compress_rest(body: ByteStream, enc: Encoder<'static>, name: String) -> ByteStream {
    struct St {
        body: ByteStream,
        enc: Encoder<'static>,
        name: String,
        done: bool,
    }
    let st = St {
        body,
        enc,
        name,
        done: false,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let mut out = Vec::new();
            let step = match st.body.next().await {
                Some(Ok(chunk)) => compress_into(&mut st.enc, &chunk, &mut out),
                Some(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                None => {
                    st.done = true;
                    finish_into(&mut st.enc, &mut out)
                }
            };
            match step {
                Ok(()) if out.is_empty() => continue,
                Ok(()) => return Some((Ok(Bytes::from(out)), st)),
                Err(e) => {
                    st.done = true;
                    let e = encoder_error(&st.name, e);
                    return Some((Err(e), st));
                }
            }
        }
    }))
}

/// Makes room in `out` for at least `n` more bytes.
fn room(out: &mut Vec<u8>, n: usize) {
    if out.capacity() - out.len() < n {
        out.reserve(n);
    }
}

fn compress_into(enc: &mut Encoder<'static>, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut input = InBuffer::around(data);
    while input.pos() < data.len() {
        room(out, zstd::zstd_safe::CCtx::out_size().max(data.len() / 2));
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        enc.run(&mut input, &mut output)?;
    }
    Ok(())
}

fn drain(
    out: &mut Vec<u8>,
    mut step: impl FnMut(&mut OutBuffer<'_, Vec<u8>>) -> io::Result<usize>,
) -> io::Result<()> {
    loop {
        room(out, zstd::zstd_safe::CCtx::out_size());
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        if step(&mut output)? == 0 {
            return Ok(());
        }
    }
}

fn flush_into(enc: &mut Encoder<'static>, out: &mut Vec<u8>) -> io::Result<()> {
    drain(out, |o| enc.flush(o))
}

fn finish_into(enc: &mut Encoder<'static>, out: &mut Vec<u8>) -> io::Result<()> {
    drain(out, |o| enc.finish(o, true))
}

/// The original bytes of a stored zstd frame, in chunks of at most 256 KiB
/// however much an input chunk expands. A frame that is cut short, damaged,
/// or followed by anything fails with [`corrupt`].
pub fn decompress(body: ByteStream, name: &str) -> ByteStream {
    struct St {
        body: ByteStream,
        dec: Option<Decoder<'static>>,
        buf: Bytes,
        pos: usize,
        /// The last step filled its output: the decoder may hold more.
        full: bool,
        frame_done: bool,
        body_done: bool,
        failed: bool,
        name: String,
    }
    let st = St {
        body,
        dec: None,
        buf: Bytes::new(),
        pos: 0,
        full: false,
        frame_done: false,
        body_done: false,
        failed: false,
        name: name.to_string(),
    };
    let fail = |mut st: St, e: StorageError| {
        st.failed = true;
        Some((Err(e), st))
    };
    Box::pin(futures::stream::unfold(st, move |mut st| async move {
        if st.failed {
            return None;
        }
        if st.dec.is_none() {
            let dec = Decoder::new().and_then(|mut d| {
                d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                    MAX_DECODE_WINDOW_LOG,
                ))?;
                Ok(d)
            });
            match dec {
                Ok(d) => st.dec = Some(d),
                Err(e) => {
                    let e = encoder_error(&st.name, e);
                    return fail(st, e);
                }
            }
        }
        loop {
            let have_input = st.pos < st.buf.len();
            if st.frame_done && have_input {
                let e = corrupt(&st.name, "bytes after the end of the frame");
                return fail(st, e);
            }
            if have_input || st.full || (st.body_done && !st.frame_done) {
                let mut out = Vec::with_capacity(OUT_CHUNK);
                let mut input = InBuffer::around(&st.buf[st.pos..]);
                let mut output = OutBuffer::around(&mut out);
                let dec = st.dec.as_mut().expect("created above");
                let hint = match dec.run(&mut input, &mut output) {
                    Ok(h) => h,
                    Err(e) => {
                        let e = corrupt(&st.name, e);
                        return fail(st, e);
                    }
                };
                let (consumed, written) = (input.pos(), output.pos());
                st.pos += consumed;
                st.full = written == OUT_CHUNK;
                if hint == 0 {
                    st.frame_done = true;
                }
                if written > 0 {
                    return Some((Ok(Bytes::from(out)), st));
                }
                if have_input {
                    if consumed > 0 {
                        continue;
                    }
                    let e = corrupt(&st.name, "the decoder made no progress");
                    return fail(st, e);
                }
                if st.body_done && !st.frame_done {
                    let e = corrupt(&st.name, "the frame is cut short");
                    return fail(st, e);
                }
            }
            if st.body_done {
                return None;
            }
            match st.body.next().await {
                Some(Ok(b)) => {
                    st.buf = b;
                    st.pos = 0;
                }
                Some(Err(e)) => return fail(st, e),
                None => st.body_done = true,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    fn stream_of(data: &[u8], chunk: usize) -> ByteStream {
        let chunks: Vec<mo_br_storage::Result<Bytes>> = data
            .chunks(chunk.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    async fn collect(s: ByteStream) -> mo_br_storage::Result<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut biggest = 0;
        let mut s = s;
        while let Some(c) = s.next().await {
            let c = c?;
            biggest = biggest.max(c.len());
            out.extend_from_slice(&c);
        }
        Ok((out, biggest))
    }

    fn text(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(format!("row {i},account_{},ok;", i % 97).as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn random(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        rand_chacha::ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut v);
        v
    }

    /// A large file at level 19 is one frame whose window stays within
    /// the cap: a decoder that allows no more than 2^WINDOW_LOG reads it.
    #[tokio::test]
    async fn high_levels_keep_the_capped_window() {
        let data = text(6 << 20);
        let Probed::Zstd(s) = probe(stream_of(&data, 256 << 10), 19, "f").await.unwrap() else {
            panic!("text must compress");
        };
        let (frame, _) = collect(s).await.unwrap();
        let mut dec = zstd::stream::read::Decoder::new(frame.as_slice()).unwrap();
        dec.window_log_max(WINDOW_LOG).unwrap();
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut dec, &mut back).expect("decoded within the capped window");
        assert_eq!(back, data);
    }

    async fn round_trip(data: &[u8], chunk: usize) -> Option<Vec<u8>> {
        match probe(stream_of(data, chunk), 3, "f").await.unwrap() {
            Probed::Raw(s) => {
                assert_eq!(collect(s).await.unwrap().0, data, "raw keeps the bytes");
                None
            }
            Probed::Zstd(s) => {
                let (frame, _) = collect(s).await.unwrap();
                let (back, biggest) = collect(decompress(stream_of(&frame, 4096), "f"))
                    .await
                    .unwrap();
                assert_eq!(back, data);
                assert!(biggest <= OUT_CHUNK);
                // A plain zstd frame: the zstd tool reads it.
                assert_eq!(zstd::decode_all(&frame[..]).unwrap(), data);
                Some(frame)
            }
        }
    }

    #[tokio::test]
    async fn compressible_files_of_every_size_round_trip() {
        for (n, chunk) in [
            (1000, 100),
            (PROBE, 64 << 10),
            (PROBE + 1, 1 << 20),
            (5 * PROBE + 17, 300_000),
        ] {
            let data = text(n);
            let frame = round_trip(&data, chunk).await.expect("text compresses");
            assert!(frame.len() < n / 4, "{n}: {}", frame.len());
        }
    }

    #[tokio::test]
    async fn random_bytes_and_empty_files_stay_raw() {
        assert!(round_trip(&random(3 * PROBE), 1 << 20).await.is_none());
        assert!(round_trip(&random(10_000), 1000).await.is_none());
        assert!(round_trip(&[], 1).await.is_none());
    }

    #[tokio::test]
    async fn a_damaged_or_short_frame_is_corrupt() {
        let data = text(3 * PROBE);
        let frame = round_trip(&data, 1 << 20).await.unwrap();
        let mut flipped = frame.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x40;
        let cut = &frame[..frame.len() - 10];
        let mut longer = frame.clone();
        longer.extend_from_slice(b"junk");
        for bad in [&flipped[..], cut, &longer[..], &b"not zstd"[..], &[][..]] {
            let e = collect(decompress(stream_of(bad, 1000), "tae/x"))
                .await
                .unwrap_err();
            assert!(is_corrupt(&e), "{e}");
            assert!(e.to_string().starts_with("tae/x: "), "{e}");
        }
    }

    #[tokio::test]
    async fn expansion_is_bounded_per_chunk() {
        // Zeros compress ~1:10000: one small input chunk is many outputs.
        let data = vec![0u8; 40 << 20];
        let Probed::Zstd(s) = probe(stream_of(&data, 4 << 20), 3, "z").await.unwrap() else {
            panic!("zeros compress")
        };
        let (frame, _) = collect(s).await.unwrap();
        assert!(frame.len() < 64 << 10, "{}", frame.len());
        let (back, biggest) = collect(decompress(stream_of(&frame, frame.len()), "z"))
            .await
            .unwrap();
        assert_eq!(back.len(), data.len());
        assert!(biggest <= OUT_CHUNK);
    }
}
