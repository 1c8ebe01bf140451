//! Local directory backend.
//!
//! Writes go to an unnamed file (`O_TMPFILE`) in the destination's directory,
//! are fsynced, then linked into place and the directory fsynced: after a
//! crash an object is either whole or absent. Where the filesystem has no
//! `O_TMPFILE` the file is a named `<dir>/.tmp.<uuid>` renamed into place
//! instead; such leftovers are never listed.
//!
//! With [`Durability::Batched`] neither fsync happens in `put`: the file is
//! written and linked, and [`Storage::sync`] makes everything written so far
//! durable with one `syncfs(2)` of the filesystem. Two fsyncs per file are
//! what bound a restore of many small files (each one a journal commit);
//! after a crash before the sync a name may hold fewer bytes than were
//! written, which is why nothing written this way is reported done before
//! the sync returns. `syncfs` reports a writeback error that happened since
//! its descriptor was opened, so the descriptor is opened before the first
//! batched write, not at the sync.
//!
//! Why unnamed: a restore creates many files in the same directories at
//! once, and create + rename are two operations under the directory's lock
//! where link is one; an unnamed file also vanishes by itself when a write
//! is cancelled or the process dies, with nothing to clean up.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::read_buffers::Pool;
use crate::{check_name, trace, ByteStream, Durability, Entry, Error, Result, Storage, Written};

/// Prefix of in-progress writes; such files are never listed.
const TMP_PREFIX: &str = ".tmp.";
/// Read chunk size: large enough for throughput, small enough that many
/// concurrent readers stay within a bounded amount of memory.
const READ_CHUNK: usize = 1 << 20;
/// Read buffers kept for reuse: as many as the chunks a few dozen
/// concurrent large reads hold at once.
static READ_BUFFERS: Pool = Pool::new(READ_CHUNK, 32);
/// Bytes gathered before one write: a network stream yields chunks of a few
/// KiB, and each write is a trip to a blocking thread and a syscall.
const WRITE_CHUNK: usize = 1 << 20;
/// Linux's IOV_MAX: the most slices one `writev` takes.
const MAX_IOVECS: usize = 1024;

#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
    durability: Durability,
    /// The root, opened at the first batched write: what `syncfs` is given.
    synced_fs: Arc<OnceLock<std::fs::File>>,
}

impl FsStorage {
    #[cfg(test)]
    pub fn new(root: PathBuf) -> Self {
        Self::with_durability(root, Durability::EachWrite)
    }

    pub fn with_durability(root: PathBuf, durability: Durability) -> Self {
        // Without syncfs (not Linux), each write is made durable on its own.
        let durability = if cfg!(target_os = "linux") {
            durability
        } else {
            Durability::EachWrite
        };
        Self {
            root,
            durability,
            synced_fs: Arc::default(),
        }
    }

    fn batched(&self) -> bool {
        self.durability == Durability::Batched
    }

    /// Opens the root for a later `syncfs`, once; `dir` (under the root)
    /// exists, so the root does.
    async fn open_for_sync(&self) -> Result<()> {
        if self.synced_fs.get().is_some() {
            return Ok(());
        }
        let root = self.root.clone();
        let dir = blocking(&self.root, move || std::fs::File::open(root)).await?;
        let _ = self.synced_fs.set(dir);
        Ok(())
    }

    fn path_of(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(name_path(&self.root, name))
    }

    /// Files under `prefix` on a blocking thread (see [`walk`]).
    fn walk(
        &self,
        prefix: &str,
        temp: bool,
    ) -> impl std::future::Future<Output = Result<Vec<Entry>>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        async move {
            check_prefix(&prefix)?;
            // Start at the deepest directory the prefix names in full, so
            // listing one backup does not walk every other one.
            let start = match prefix.rfind('/') {
                Some(i) => name_path(&root, &prefix[..i]),
                None => root.clone(),
            };
            tokio::task::spawn_blocking(move || walk(&root, &start, &prefix, temp))
                .await
                .map_err(|e| Error::Io {
                    path: "list".into(),
                    source: std::io::Error::other(e),
                })?
        }
    }
}

/// What [`FsStorage::put_file`]'s one trip did.
enum Whole {
    Written(Written),
    /// Read, but its sha256 (this one) is not the one expected: nothing
    /// was written.
    Mismatch([u8; 32]),
    /// Nothing: the file goes the streaming way.
    Streamed,
}

/// A file being written, not yet at its name.
struct Temp {
    file: std::fs::File,
    /// Its temp name when it has one (no `O_TMPFILE`); removed unless renamed.
    guard: TempGuard,
}

/// Opens the temp file in `dir` (created if missing), unnamed where the
/// filesystem allows.
async fn open_temp(dir: &Path) -> Result<Temp> {
    let d = dir.to_path_buf();
    // The open itself, not a `create_dir_all` first: that is a mkdir, under
    // the parent directory's lock, for every file even when the directory
    // exists.
    let unnamed = blocking(dir, move || Ok(open_unnamed(&d))).await?;
    match unnamed {
        Ok(file) => {
            return Ok(Temp {
                file,
                guard: TempGuard(None),
            })
        }
        Err(e) if unnamed_unsupported(&e) => {}
        Err(e) => return Err(io_err(dir, e)),
    }
    let tmp = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
    let guard = TempGuard(Some(tmp.clone()));
    let file = create_file(&tmp).await?.into_std().await;
    Ok(Temp { file, guard })
}

#[cfg(target_os = "linux")]
fn open_unnamed(dir: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let mut attempts = 0;
    loop {
        match rustix::fs::open(
            dir,
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        ) {
            Ok(fd) => return Ok(std::fs::File::from(fd)),
            // The directory is missing: created here, and again if a
            // concurrent `delete` removes it as it becomes empty.
            Err(e) if e == rustix::io::Errno::NOENT && attempts < 3 => {
                attempts += 1;
                std::fs::create_dir_all(dir)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn open_unnamed(_dir: &Path) -> std::io::Result<std::fs::File> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// The errors of a filesystem (or kernel) without `O_TMPFILE`.
fn unnamed_unsupported(e: &std::io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::io::Errno;
        let errno = e.raw_os_error().map(Errno::from_raw_os_error);
        matches!(
            errno,
            Some(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS)
        ) || e.kind() == std::io::ErrorKind::Unsupported
    }
    #[cfg(not(target_os = "linux"))]
    {
        e.kind() == std::io::ErrorKind::Unsupported
    }
}

/// Gives the unnamed `file` the name `dest`. `linkat` will not replace an
/// existing file, so an overwrite links under a temp name first and renames.
#[cfg(target_os = "linux")]
fn link_unnamed(file: &std::fs::File, dir: &Path, dest: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // Through /proc rather than AT_EMPTY_PATH, which needs CAP_DAC_READ_SEARCH.
    let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
    let link = |to: &Path| {
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc.as_str(),
            rustix::fs::CWD,
            to,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        )
    };
    match link(dest) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::EXIST => {
            let tmp = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
            let mut guard = TempGuard(Some(tmp.clone()));
            link(&tmp)?;
            std::fs::rename(&tmp, dest)?;
            guard.0 = None;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn link_unnamed(_file: &std::fs::File, _dir: &Path, _dest: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(target_os = "linux")]
fn syncfs(fs: &std::fs::File) -> std::io::Result<()> {
    Ok(rustix::fs::syncfs(fs)?)
}

/// Never called: batched durability is Linux only (see `with_durability`).
#[cfg(not(target_os = "linux"))]
fn syncfs(fs: &std::fs::File) -> std::io::Result<()> {
    fs.sync_all()
}

/// The next chunk of `file`: up to [`READ_CHUNK`] bytes, read straight into
/// the buffer the stream hands on (no staging copy), and whether the end of
/// the file was seen. `left` is what the file held past the current offset
/// when opened; the buffer is sized to it, so a small file costs no more
/// memory than itself, plus one byte, so a file that ends there is known to
/// end in the same call (a file that grew since is read on). A read of
/// 128 KiB or more takes a kept [`READ_CHUNK`] buffer ([`READ_BUFFERS`]).
fn read_chunk(file: &mut std::fs::File, left: u64) -> std::io::Result<(Bytes, bool)> {
    let want = usize::try_from(left.saturating_add(1))
        .unwrap_or(READ_CHUNK)
        .min(READ_CHUNK);
    let mut buf = READ_BUFFERS.take(want);
    let ended = fill(file, &mut buf, want)?;
    Ok((READ_BUFFERS.freeze(buf), ended))
}

/// Reads into `buf` until it holds `want` bytes (its capacity at least) or
/// the file ends; whether it ended. Each `read(2)` asks for all the room
/// left: std's `read_to_end` asks for 8 KiB first and doubles, and then
/// once more to see the end, so a 16 KiB file took three reads, a 1 MiB
/// chunk eight.
#[cfg(target_os = "linux")]
fn fill(file: &std::fs::File, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    while buf.len() < want {
        match rustix::io::read(file, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

#[cfg(not(target_os = "linux"))]
fn fill(file: &std::fs::File, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    use std::io::Read;
    let before = buf.len();
    file.take((want - before) as u64).read_to_end(buf)?;
    Ok(buf.len() < want)
}

/// Runs `f` on a blocking thread, its errors about `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_err(path, std::io::Error::other(e)))?
        .map_err(|e| io_err(path, e))
}

/// Writes `data` to `file` on a blocking thread and hands the file back.
async fn write_blocking(
    path: &Path,
    mut file: std::fs::File,
    data: Vec<Bytes>,
) -> Result<std::fs::File> {
    blocking(path, move || {
        write_all_vectored(&mut file, &data)?;
        Ok(file)
    })
    .await
}

/// Writes `chunks` in order with as few `writev`s as the kernel allows:
/// the chunks a stream hands over are gathered by reference, not copied
/// into one buffer first.
fn write_all_vectored(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| IoSlice::new(c))
        .collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        match file.write_vectored(left) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the rest of a file, fsyncs it unless `batched`, and gives it its
/// name: `named` is its temp name when it has one, else it is linked from
/// unnamed. Unless batched its directory is fsynced too, so the name is as
/// durable as the bytes when this returns.
fn finish_file(
    mut file: std::fs::File,
    named: Option<&Path>,
    pending: &[Bytes],
    at: &Path,
    dir: &Path,
    batched: bool,
) -> std::io::Result<()> {
    write_all_vectored(&mut file, pending)?;
    if !batched {
        file.sync_all()?;
    }
    match named {
        Some(tmp) => std::fs::rename(tmp, at)?,
        None => link_unnamed(&file, dir, at)?,
    }
    if !batched {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn name_path(root: &Path, name: &str) -> PathBuf {
    name.split('/').fold(root.to_path_buf(), |p, c| p.join(c))
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates the temp file, creating parent directories, on a blocking thread.
/// tokio's own `open`, when the put is dropped while it runs, still creates
/// the file after `TempGuard` has run, leaving an empty temp file behind; the
/// blocking thread here removes what it created once nobody waits for it.
async fn create_file(tmp: &Path) -> Result<tokio::fs::File> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let path = tmp.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let created = create_file_blocking(&path);
        if let Err(Ok(_unwanted)) = tx.send(created) {
            let _ = std::fs::remove_file(&path);
        }
    });
    let mut pending = PendingCreate {
        rx,
        path: tmp.to_path_buf(),
    };
    let created = (&mut pending.rx)
        .await
        .map_err(|_| io_err(tmp, std::io::Error::other("file creation task lost")))?;
    Ok(tokio::fs::File::from_std(
        created.map_err(|e| io_err(tmp, e))?,
    ))
}

/// A creation nobody waits for any more: a file already handed over but not
/// taken is removed here, one created later by the blocking thread.
struct PendingCreate {
    rx: tokio::sync::oneshot::Receiver<std::io::Result<std::fs::File>>,
    path: PathBuf,
}

impl Drop for PendingCreate {
    fn drop(&mut self) {
        self.rx.close();
        if let Ok(Ok(_unwanted)) = self.rx.try_recv() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Retried a few times because a concurrent `delete` may remove a directory
/// that just became empty between `create_dir_all` and the file creation.
fn create_file_blocking(tmp: &Path) -> std::io::Result<std::fs::File> {
    let dir = tmp.parent().unwrap_or_else(|| Path::new("."));
    let mut attempts = 0;
    loop {
        std::fs::create_dir_all(dir)?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
        {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// A list prefix may end in a partial component, but must not climb out of
/// the root.
fn check_prefix(prefix: &str) -> Result<()> {
    let bad = prefix.starts_with('/')
        || prefix.contains('\\')
        || prefix.contains('\0')
        || prefix.split('/').any(|c| c == "." || c == "..")
        || prefix.contains("//");
    if bad {
        return Err(Error::BadName(prefix.to_string()));
    }
    Ok(())
}

/// Walks `start` (a directory under `root`), collecting files whose
/// root-relative name starts with `prefix`: the objects, or with `temp` the
/// temp files of unfinished writes instead.
fn walk(root: &Path, start: &Path, prefix: &str, temp: bool) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![start.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            // A directory removed by a concurrent delete holds nothing to list.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir, e)),
        };
        for ent in rd {
            let ent = ent.map_err(|e| io_err(&dir, e))?;
            let path = ent.path();
            let ft = ent.file_type().map_err(|e| io_err(&path, e))?;
            let Some(file_name) = ent.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "skipping non UTF-8 file name");
                continue;
            };
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            if !ft.is_file() || file_name.starts_with(TMP_PREFIX) != temp {
                continue;
            }
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let name: Option<Vec<&str>> =
                rel.components().map(|c| c.as_os_str().to_str()).collect();
            let Some(name) = name.map(|v| v.join("/")) else {
                continue;
            };
            if !name.starts_with(prefix) {
                continue;
            }
            let size = match ent.metadata() {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, e)),
            };
            out.push(Entry { name, size });
        }
    }
    Ok(out)
}

/// Removes a temp file unless it was renamed into place, also when the put
/// is cancelled mid-write (its future dropped because the coordinator gave
/// up on the shard): an unfinished write leaves nothing behind.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait::async_trait]
impl Storage for FsStorage {
    fn describe(&self) -> String {
        format!("filesystem {}", self.root.display())
    }

    async fn put(
        &self,
        name: &str,
        mut body: ByteStream,
        expect_sha256: Option<[u8; 32]>,
    ) -> Result<Written> {
        let dest = self.path_of(name)?;
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let batched = self.batched();
        if !batched && trace::enabled() {
            trace::record("begin", &dest);
        }
        // Opened only when a first WRITE_CHUNK is due: a smaller file is
        // opened, written and named in one trip to a blocking thread (each
        // trip is a thread wake-up and a task wake-up; a restore of 20,000
        // small files spent a tenth of its CPU on them).
        let mut temp: Option<Temp> = None;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        // Chunks held until WRITE_CHUNK bytes (or as many chunks as one
        // writev takes) are, then written together.
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            pending_len += chunk.len();
            pending.push(chunk);
            if pending_len >= WRITE_CHUNK || pending.len() >= MAX_IOVECS {
                let Temp { file, guard } = match temp.take() {
                    Some(t) => t,
                    None => open_temp(&dir).await?,
                };
                let file = write_blocking(&dest, file, std::mem::take(&mut pending)).await?;
                temp = Some(Temp { file, guard });
                pending_len = 0;
            }
        }
        let sha256: [u8; 32] = hasher.finalize().into();
        if let Some(expected) = expect_sha256 {
            if expected != sha256 {
                return Err(Error::ChecksumMismatch {
                    name: name.to_string(),
                    expected: hex::encode(expected),
                    actual: hex::encode(sha256),
                });
            }
        }
        // The rest, the fsync, the name and the directory's fsync in one trip:
        // the object gets its name only once its bytes are durable, and `put`
        // returns only once the name is. Batched: no fsync, `sync` comes later.
        let (at, d) = (dest.clone(), dir.clone());
        match temp {
            Some(Temp { file, mut guard }) => {
                let named = guard.0.clone();
                blocking(&dest, move || {
                    finish_file(file, named.as_deref(), &pending, &at, &d, batched)
                })
                .await?;
                guard.0 = None;
            }
            None => {
                // Unnamed, the file needs no guard: a failure before its
                // link leaves nothing behind.
                let opened = blocking(&dest, move || match open_unnamed(&d) {
                    Ok(file) => finish_file(file, None, &pending, &at, &d, batched).map(|()| None),
                    Err(e) if unnamed_unsupported(&e) => Ok(Some(pending)),
                    Err(e) => Err(e),
                })
                .await?;
                if let Some(pending) = opened {
                    let Temp { file, mut guard } = open_temp(&dir).await?;
                    let named = guard.0.clone();
                    let (at, d) = (dest.clone(), dir.clone());
                    blocking(&dest, move || {
                        finish_file(file, named.as_deref(), &pending, &at, &d, batched)
                    })
                    .await?;
                    guard.0 = None;
                }
            }
        }
        if batched {
            self.open_for_sync().await?;
        }
        trace::record(if batched { "linked" } else { "durable" }, &dest);
        Ok(Written { size, sha256 })
    }

    fn local_file(&self, name: &str) -> Option<PathBuf> {
        self.path_of(name).ok()
    }

    async fn put_file(
        &self,
        name: &str,
        src: &Path,
        size: u64,
        expect_sha256: Option<[u8; 32]>,
    ) -> Result<Option<Written>> {
        // A file that fills a read chunk may go on past it: streamed.
        if size >= READ_CHUNK as u64 {
            return Ok(None);
        }
        let dest = self.path_of(name)?;
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let batched = self.batched();
        if !batched && trace::enabled() {
            trace::record("begin", &dest);
        }
        let (src, at) = (src.to_path_buf(), dest.clone());
        let whole = blocking(&dest, move || {
            // The source gone, unreadable or grown: left to the stream,
            // which reports it (or reads it on) as for any file.
            let Ok(mut file) = std::fs::File::open(&src) else {
                return Ok(Whole::Streamed);
            };
            let Ok((data, true)) = read_chunk(&mut file, size) else {
                return Ok(Whole::Streamed);
            };
            drop(file);
            let sha256: [u8; 32] = Sha256::digest(&data).into();
            if expect_sha256.is_some_and(|want| want != sha256) {
                return Ok(Whole::Mismatch(sha256));
            }
            let written = Written {
                size: data.len() as u64,
                sha256,
            };
            match open_unnamed(&dir) {
                Ok(file) => finish_file(file, None, &[data], &at, &dir, batched)?,
                Err(e) if unnamed_unsupported(&e) => return Ok(Whole::Streamed),
                Err(e) => return Err(e),
            }
            Ok(Whole::Written(written))
        })
        .await?;
        let written = match whole {
            Whole::Streamed => return Ok(None),
            Whole::Mismatch(actual) => {
                return Err(Error::ChecksumMismatch {
                    name: name.to_string(),
                    expected: hex::encode(expect_sha256.unwrap_or_default()),
                    actual: hex::encode(actual),
                })
            }
            Whole::Written(w) => w,
        };
        if batched {
            self.open_for_sync().await?;
        }
        trace::record(if batched { "linked" } else { "durable" }, &dest);
        Ok(Some(written))
    }

    async fn put_bytes(&self, name: &str, data: Bytes) -> Result<Written> {
        self.put(
            name,
            Box::pin(futures::stream::once(async { Ok(data) })),
            None,
        )
        .await
    }

    async fn get(&self, name: &str) -> Result<ByteStream> {
        let path = Arc::new(self.path_of(name)?);
        let opened = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                let mut file = std::fs::File::open(p.as_path())?;
                let len = file.metadata()?.len();
                let (first, ended) = read_chunk(&mut file, len)?;
                Ok((file, len.saturating_sub(first.len() as u64), first, ended))
            })
            .await
            .map_err(|e| io_err(&path, std::io::Error::other(e)))?
        };
        let (file, left, first, ended) = match opened {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err(&path, e)),
        };
        // A file smaller than a chunk is read whole, its end seen, in the
        // one blocking call above; a larger one a chunk per call.
        let rest =
            futures::stream::try_unfold((file, left, ended), move |(mut file, left, ended)| {
                let path = path.clone();
                async move {
                    if ended {
                        return Ok(None);
                    }
                    // Nothing left of the length opened but no end seen: the
                    // file grew since, and is read on a whole chunk at a time.
                    let expect = if left == 0 { u64::MAX } else { left };
                    let (file, chunk, ended) = blocking(&path, move || {
                        read_chunk(&mut file, expect).map(|(chunk, ended)| (file, chunk, ended))
                    })
                    .await?;
                    if chunk.is_empty() {
                        return Ok(None);
                    }
                    let left = left.saturating_sub(chunk.len() as u64);
                    Ok(Some((chunk, (file, left, ended))))
                }
            });
        let first = (!first.is_empty()).then_some(Ok(first));
        Ok(Box::pin(futures::stream::iter(first).chain(rest)))
    }

    async fn get_bytes(&self, name: &str) -> Result<Bytes> {
        let path = self.path_of(name)?;
        match tokio::fs::read(&path).await {
            Ok(v) => Ok(Bytes::from(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(name.to_string()))
            }
            Err(e) => Err(io_err(&path, e)),
        }
    }

    async fn head(&self, name: &str) -> Result<Option<u64>> {
        let path = self.path_of(name)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path_of(name)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path, e)),
        }
        // Empty directories left behind would make a deleted backup look
        // present to anyone browsing the root; a non-empty one stops the climb.
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || !d.starts_with(&self.root) {
                break;
            }
            if tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Pin<Box<dyn Stream<Item = Result<Entry>> + Send + '_>> {
        let fut = self.walk(prefix, false);
        Box::pin(futures::stream::once(fut).flat_map(|r| match r {
            Ok(v) => futures::stream::iter(v.into_iter().map(Ok)).left_stream(),
            Err(e) => futures::stream::iter(vec![Err(e)]).right_stream(),
        }))
    }

    async fn remove_incomplete(&self, prefix: &str) -> Result<usize> {
        let temps = self.walk(prefix, true).await?;
        for t in &temps {
            let path = name_path(&self.root, &t.name);
            match tokio::fs::remove_file(&path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&path, e)),
                _ => {}
            }
        }
        Ok(temps.len())
    }

    async fn sync(&self) -> Result<()> {
        // Nothing opened: nothing written in batches.
        let Some(fs) = self.synced_fs.get() else {
            return Ok(());
        };
        let fs = fs.try_clone().map_err(|e| io_err(&self.root, e))?;
        let root = self.root.clone();
        blocking(&self.root, move || {
            let token = trace::sync_token();
            trace::record(&format!("syncing {token}"), &root);
            syncfs(&fs)?;
            trace::record(&format!("synced {token}"), &root);
            Ok(())
        })
        .await
    }

    async fn probe(&self) -> Result<()> {
        match tokio::fs::metadata(&self.root).await {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(io_err(
                &self.root,
                std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "exists and is not a directory",
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.root, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn stream_of(chunks: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from_static(c))),
        ))
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    async fn names(s: &FsStorage, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = s
            .list(prefix)
            .map_ok(|e| e.name)
            .try_collect()
            .await
            .expect("list");
        v.sort();
        v
    }

    /// Puts cancelled at every moment of their life, creation of the temp
    /// file included, leave no file behind once the blocking threads settle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_puts_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(FsStorage::new(dir.path().to_path_buf()));
        let mut puts = Vec::new();
        for i in 0..300u32 {
            let s = s.clone();
            let put = tokio::spawn(async move {
                // A body that never ends: the put is only ever cancelled.
                let body: ByteStream = Box::pin(
                    futures::stream::iter([Ok(Bytes::from_static(b"partial"))])
                        .chain(futures::stream::pending()),
                );
                s.put(&format!("d{}/f{i}", i % 7), body, None).await
            });
            // Spun, not slept: the put runs on the other worker meanwhile
            // and is caught at a different step each time.
            let until =
                std::time::Instant::now() + std::time::Duration::from_micros(u64::from(i % 50) * 5);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
            put.abort();
            puts.push(put);
        }
        for put in puts {
            assert!(put.await.unwrap_err().is_cancelled());
        }
        let left = || files_under(dir.path());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !left().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(left(), Vec::<PathBuf>::new());
    }

    fn files_under(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("root"));
        s.probe().await.unwrap();
        let w = s
            .put(
                "a/b/c.dat",
                stream_of(vec![b"hello ", b"world"]),
                Some(sha(b"hello world")),
            )
            .await
            .unwrap();
        assert_eq!(w.size, 11);
        assert_eq!(w.sha256, sha(b"hello world"));
        assert_eq!(s.head("a/b/c.dat").await.unwrap(), Some(11));
        assert_eq!(
            s.get_bytes("a/b/c.dat").await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        let got = crate::collect(s.get("a/b/c.dat").await.unwrap())
            .await
            .unwrap();
        assert_eq!(got, Bytes::from_static(b"hello world"));

        // Larger than one read chunk, so `get` yields several bounded chunks.
        let big: Vec<u8> = (0..(READ_CHUNK * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        s.put_bytes("big", Bytes::from(big.clone())).await.unwrap();
        let chunks: Vec<Bytes> = s.get("big").await.unwrap().try_collect().await.unwrap();
        assert!(chunks.len() >= 3 && chunks.iter().all(|c| c.len() <= READ_CHUNK));
        assert_eq!(chunks.concat(), big);

        // Sizes at a chunk's edge read back whole, a file under a chunk as
        // one chunk.
        for len in [READ_CHUNK - 1, READ_CHUNK, READ_CHUNK + 1] {
            s.put_bytes("edge", Bytes::from(big[..len].to_vec()))
                .await
                .unwrap();
            let chunks: Vec<Bytes> = s.get("edge").await.unwrap().try_collect().await.unwrap();
            assert_eq!(chunks.concat(), big[..len], "{len}");
            assert_eq!(chunks.len(), len.div_ceil(READ_CHUNK), "{len}");
        }

        // A file that grows while it is read is read on in whole chunks,
        // not a byte at a time past the length it had when opened.
        let start = &big[..READ_CHUNK + 10];
        s.put_bytes("growing", Bytes::from(start.to_vec()))
            .await
            .unwrap();
        let mut reading = s.get("growing").await.unwrap();
        let first = reading.try_next().await.unwrap().unwrap();
        let grown = vec![7u8; 3 * READ_CHUNK];
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join("root").join("growing"))
                .unwrap();
            f.write_all(&grown).unwrap();
        }
        let mut chunks = vec![first];
        chunks.extend(reading.try_collect::<Vec<Bytes>>().await.unwrap());
        assert_eq!(chunks.concat(), [start, &grown[..]].concat());
        assert!(chunks.len() <= 6, "{} chunks", chunks.len());

        // Many small chunks (more than one writev takes) around a large
        // one, as a network stream hands them over, land in order; an
        // empty file reads back as no chunk at all.
        let mut pieces: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(format!("{i:07}")))
            .collect();
        pieces.insert(1500, Bytes::from(big.clone()));
        let whole = pieces.concat();
        let stream = Box::pin(futures::stream::iter(pieces.into_iter().map(Ok)));
        let w = s.put("pieces", stream, Some(sha(&whole))).await.unwrap();
        assert_eq!(w.size, whole.len() as u64);
        assert_eq!(s.get_bytes("pieces").await.unwrap(), Bytes::from(whole));
        s.put_bytes("empty", Bytes::new()).await.unwrap();
        let chunks: Vec<Bytes> = s.get("empty").await.unwrap().try_collect().await.unwrap();
        assert!(chunks.is_empty(), "{chunks:?}");

        // Overwrite is allowed.
        s.put_bytes("a/b/c.dat", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(
            s.get_bytes("a/b/c.dat").await.unwrap(),
            Bytes::from_static(b"x")
        );
    }

    /// Batched writes are named when `put` returns and read back whole;
    /// `sync` works before any write (nothing to do) and after them.
    #[tokio::test]
    async fn batched_writes_then_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::with_durability(dir.path().join("root"), Durability::Batched);
        s.sync().await.unwrap();
        for i in 0..20 {
            let name = format!("d{}/f{i}", i % 3);
            let w = s
                .put(&name, stream_of(vec![b"batched ", b"bytes"]), None)
                .await
                .unwrap();
            assert_eq!(w.sha256, sha(b"batched bytes"));
            assert_eq!(s.get_bytes(&name).await.unwrap(), &b"batched bytes"[..]);
        }
        s.sync().await.unwrap();
        assert_eq!(names(&s, "").await.len(), 20);
        // A checksum mismatch still leaves nothing, batched or not.
        let err = s
            .put("d0/bad", stream_of(vec![b"x"]), Some(sha(b"y")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
        assert_eq!(s.head("d0/bad").await.unwrap(), None);
    }

    /// A small local file is copied in one trip, as `put` would store it;
    /// whatever `put_file` will not take (too large, gone, grown past what
    /// was listed) is left to the stream, with nothing written.
    #[tokio::test]
    async fn small_files_copied_whole_and_the_rest_left_to_streaming() {
        let dir = tempfile::tempdir().unwrap();
        let src = FsStorage::new(dir.path().join("src"));
        let data = vec![7u8; 16 * 1024];
        src.put_bytes("a/obj", Bytes::from(data.clone()))
            .await
            .unwrap();
        let path = src.local_file("a/obj").unwrap();
        assert_eq!(path, dir.path().join("src/a/obj"));
        assert!(src.local_file("../escape").is_none());

        for durability in [Durability::EachWrite, Durability::Batched] {
            let dst = FsStorage::with_durability(dir.path().join("dst"), durability);
            let w = dst
                .put_file("b/obj", &path, data.len() as u64, Some(sha(&data)))
                .await
                .unwrap()
                .expect("copied whole");
            assert_eq!((w.size, w.sha256), (data.len() as u64, sha(&data)));
            assert_eq!(dst.get_bytes("b/obj").await.unwrap(), data);
            // An existing object is replaced, as by `put`.
            let other = b"shorter".to_vec();
            src.put_bytes("a/other", Bytes::from(other.clone()))
                .await
                .unwrap();
            let w = dst
                .put_file("b/obj", &src.local_file("a/other").unwrap(), 7, None)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(w.sha256, sha(&other));
            assert_eq!(dst.get_bytes("b/obj").await.unwrap(), other);
            dst.sync().await.unwrap();
            assert_eq!(names(&dst, "").await, ["b/obj"]);
            std::fs::remove_dir_all(dir.path().join("dst")).unwrap();
        }

        let dst = FsStorage::new(dir.path().join("dst"));
        // Bytes not the ones recorded: refused, nothing written.
        let err = dst
            .put_file("c/bad", &path, data.len() as u64, Some(sha(b"other")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
        // Listed at a size it has since grown past, listed at a chunk or
        // more, or gone: for the stream to read (and report).
        let streamed = [
            (path.clone(), data.len() as u64 - 1),
            (path.clone(), READ_CHUNK as u64),
            (dir.path().join("src/missing"), 10),
        ];
        for (from, size) in streamed {
            let r = dst.put_file("c/obj", &from, size, None).await.unwrap();
            assert_eq!(r, None, "{} at {size}", from.display());
        }
        assert!(!dir.path().join("dst").exists());
    }

    #[tokio::test]
    async fn checksum_mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().to_path_buf());
        let err = s
            .put("x/y", stream_of(vec![b"data"]), Some(sha(b"other")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
        assert_eq!(s.head("x/y").await.unwrap(), None);
        // A body this small is checked before anything is created.
        assert!(!dir.path().join("x").exists());
        // A larger one is written as it comes: what was written goes away.
        let big = Bytes::from(vec![b'z'; 3 * WRITE_CHUNK + 5]);
        let chunks: Vec<Result<Bytes>> = (0..big.len())
            .step_by(64 * 1024)
            .map(|i| Ok(big.slice(i..(i + 64 * 1024).min(big.len()))))
            .collect();
        let err = s
            .put(
                "x/big",
                Box::pin(futures::stream::iter(chunks)),
                Some(sha(b"other")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("x")).unwrap().collect();
        assert!(leftovers.is_empty(), "temp file left behind: {leftovers:?}");
        assert!(names(&s, "").await.is_empty());
    }

    #[tokio::test]
    async fn failing_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().to_path_buf());
        let body: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"part")),
            Err(Error::Config("boom".into())),
        ]));
        assert!(s.put("f", body, None).await.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn remove_incomplete_takes_only_temp_files_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().to_path_buf());
        for n in ["b1/data/1", "b1/x", "b2/data/1"] {
            s.put_bytes(n, Bytes::from_static(b"z")).await.unwrap();
        }
        for t in ["b1/.tmp.1", "b1/data/.tmp.2", "b2/data/.tmp.3"] {
            std::fs::write(name_path(dir.path(), t), b"partial").unwrap();
        }
        assert_eq!(s.remove_incomplete("b1/").await.unwrap(), 2);
        let mut left: Vec<String> = files_under(dir.path())
            .into_iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        left.sort();
        assert_eq!(left, ["b1/data/1", "b1/x", "b2/data/.tmp.3", "b2/data/1"]);
        assert_eq!(s.remove_incomplete("b1/").await.unwrap(), 0);
        assert!(s.remove_incomplete("../").await.is_err());
    }

    #[tokio::test]
    async fn list_prefix_and_skip_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().to_path_buf());
        for n in ["b1/data/1", "b1/data/2", "b1/manifest", "b10/manifest", "c"] {
            s.put_bytes(n, Bytes::from_static(b"z")).await.unwrap();
        }
        std::fs::write(dir.path().join("b1/data/.tmp.123"), b"partial").unwrap();
        assert_eq!(
            names(&s, "").await,
            ["b1/data/1", "b1/data/2", "b1/manifest", "b10/manifest", "c"]
        );
        assert_eq!(
            names(&s, "b1/").await,
            ["b1/data/1", "b1/data/2", "b1/manifest"]
        );
        assert_eq!(
            names(&s, "b1").await,
            ["b1/data/1", "b1/data/2", "b1/manifest", "b10/manifest"]
        );
        assert_eq!(names(&s, "b1/data/").await, ["b1/data/1", "b1/data/2"]);
        assert!(names(&s, "nope/").await.is_empty());
        let sizes: Vec<u64> = s.list("c").map_ok(|e| e.size).try_collect().await.unwrap();
        assert_eq!(sizes, [1]);

        let missing = FsStorage::new(dir.path().join("absent"));
        assert!(names(&missing, "").await.is_empty());
        let bad: Vec<_> = s.list("../").collect().await;
        assert!(matches!(bad.as_slice(), [Err(Error::BadName(_))]));

        // One level only; the temp file of an unfinished write is not there.
        let mut level: Vec<String> = s
            .list_dir("b1/")
            .map_ok(|e| e.name)
            .try_collect()
            .await
            .unwrap();
        level.sort();
        assert_eq!(level, ["b1/manifest"]);
        assert_eq!(s.first_under("nope/").await.unwrap(), None);
        assert!(s.first_under("b1/data/").await.unwrap().is_some());
        assert_eq!(missing.first_under("").await.unwrap(), None);
    }

    #[tokio::test]
    async fn bad_names_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("root"));
        for n in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a/",
            "a\\b",
        ] {
            let err = s.put_bytes(n, Bytes::from_static(b"z")).await.unwrap_err();
            assert!(matches!(err, Error::BadName(_)), "{n:?}: {err}");
            assert!(matches!(s.get_bytes(n).await, Err(Error::BadName(_))));
            assert!(matches!(s.delete(n).await, Err(Error::BadName(_))));
        }
        assert!(!dir.path().join("x").exists());
    }

    #[tokio::test]
    async fn delete_missing_ok_and_prunes_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().to_path_buf());
        s.delete("never/was").await.unwrap();
        s.put_bytes("a/b/c", Bytes::from_static(b"1"))
            .await
            .unwrap();
        s.put_bytes("a/d", Bytes::from_static(b"2")).await.unwrap();
        s.delete("a/b/c").await.unwrap();
        assert!(!dir.path().join("a/b").exists());
        assert!(dir.path().join("a/d").exists());
        s.delete("a/d").await.unwrap();
        assert!(!dir.path().join("a").exists());
        assert!(dir.path().exists());
        assert!(matches!(s.get("a/d").await, Err(Error::NotFound(_))));
        assert_eq!(s.head("a/d").await.unwrap(), None);
    }

    #[tokio::test]
    async fn probe_rejects_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(FsStorage::new(f).probe().await.is_err());
        assert!(FsStorage::new(dir.path().join("later"))
            .probe()
            .await
            .is_ok());
    }
}
