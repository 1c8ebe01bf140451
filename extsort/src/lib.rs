//! External merge sort: sorts more items than should be held in memory.
//!
//! A node's SHARED directory can hold millions of objects and `read_dir`
//! lists them in no particular order, yet the inventory must stream them
//! sorted. [`ExternalSort`] keeps at most `run_size` items in memory: when
//! that many have been pushed it sorts them and spills the run to a file in
//! its own temp directory; [`ExternalSort::finish`] then merges the runs with
//! a heap, reading one item per run at a time. Input that fits in one run
//! never touches the disk. The temp directory goes away with the sorter or
//! the [`Sorted`] iterator, however they end (finished, failed or dropped).
//!
//! Run files are private to one process and one sort: a record is a
//! little-endian u32 length and the bytes [`Record::encode`] wrote.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use tempfile::TempDir;

/// A run file could not be written or read back; the path says which.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct Error {
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl Error {
    fn io(path: impl AsRef<std::path::Path>, source: io::Error) -> Self {
        Error {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs merged at once. Past this many, the runs are merged into one before
/// more are spilled, so the open files (and their read buffers) stay bounded
/// however many items come.
pub const FAN_IN: usize = 64;

/// An item that can be spilled to a run file and read back.
pub trait Record: Ord + Sized {
    fn encode(&self, out: &mut Vec<u8>);
    /// `None` if `bytes` is not what `encode` wrote.
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl Record for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Collects items, then yields them sorted (see the module docs).
pub struct ExternalSort<T> {
    run_size: usize,
    fan_in: usize,
    /// Where the temp directory is created; the system's if `None`.
    spill_parent: Option<PathBuf>,
    buf: Vec<T>,
    /// Created at the first spill, so sorts that fit in memory leave no trace.
    dir: Option<TempDir>,
    runs: Vec<PathBuf>,
    next_run: usize,
}

impl<T: Record> ExternalSort<T> {
    /// Sorts in runs of `run_size` items (at least 1).
    pub fn new(run_size: usize) -> Self {
        ExternalSort {
            run_size: run_size.max(1),
            fan_in: FAN_IN,
            spill_parent: None,
            buf: Vec::new(),
            dir: None,
            runs: Vec::new(),
            next_run: 0,
        }
    }

    /// Spills runs into a temp directory under `parent`.
    pub fn spill_in(mut self, parent: impl Into<PathBuf>) -> Self {
        self.spill_parent = Some(parent.into());
        self
    }

    /// Merges at most `fan_in` runs at once (at least 2).
    pub fn fan_in(mut self, fan_in: usize) -> Self {
        self.fan_in = fan_in.max(2);
        self
    }

    pub fn push(&mut self, item: T) -> Result<()> {
        self.buf.push(item);
        if self.buf.len() >= self.run_size {
            self.spill()?;
            if self.runs.len() >= self.fan_in {
                self.compact()?;
            }
        }
        Ok(())
    }

    /// Everything pushed, sorted.
    pub fn finish(mut self) -> Result<Sorted<T>> {
        if self.runs.is_empty() {
            self.buf.sort_unstable();
            let items = std::mem::take(&mut self.buf);
            return Ok(Sorted {
                inner: Inner::Memory(items.into_iter()),
                _dir: None,
            });
        }
        if !self.buf.is_empty() {
            self.spill()?;
        }
        let merge = Merge::open(std::mem::take(&mut self.runs))?;
        Ok(Sorted {
            inner: Inner::Merge(merge),
            _dir: self.dir.take(),
        })
    }

    fn new_run(&mut self) -> Result<(PathBuf, BufWriter<File>)> {
        if self.dir.is_none() {
            let mut builder = tempfile::Builder::new();
            builder.prefix("mo-br-sort-");
            let parent = self.spill_parent.clone().unwrap_or_else(std::env::temp_dir);
            let dir = builder
                .tempdir_in(&parent)
                .map_err(|e| Error::io(&parent, e))?;
            self.dir = Some(dir);
        }
        let dir = self.dir.as_ref().expect("created above").path();
        let path = dir.join(format!("run-{}", self.next_run));
        self.next_run += 1;
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok((path, BufWriter::new(file)))
    }

    fn spill(&mut self) -> Result<()> {
        self.buf.sort_unstable();
        let (path, mut out) = self.new_run()?;
        let mut scratch = Vec::new();
        for item in self.buf.drain(..) {
            write_record(&mut out, &item, &mut scratch).map_err(|e| Error::io(&path, e))?;
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
        self.runs.push(path);
        Ok(())
    }

    /// Merges every run so far into one.
    fn compact(&mut self) -> Result<()> {
        let mut merge = Merge::<T>::open(std::mem::take(&mut self.runs))?;
        let (path, mut out) = self.new_run()?;
        let mut scratch = Vec::new();
        while let Some(item) = merge.next_item()? {
            write_record(&mut out, &item, &mut scratch).map_err(|e| Error::io(&path, e))?;
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
        self.runs.push(path);
        Ok(())
    }
}

/// The sorted items of an [`ExternalSort`]. Stops after the first error.
pub struct Sorted<T> {
    inner: Inner<T>,
    /// Keeps the runs until the iterator is dropped.
    _dir: Option<TempDir>,
}

enum Inner<T> {
    Memory(std::vec::IntoIter<T>),
    Merge(Merge<T>),
    Failed,
}

impl<T: Record> Iterator for Sorted<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match &mut self.inner {
            Inner::Memory(items) => items.next().map(Ok),
            Inner::Merge(merge) => match merge.next_item() {
                Ok(item) => item.map(Ok),
                Err(e) => {
                    self.inner = Inner::Failed;
                    Some(Err(e))
                }
            },
            Inner::Failed => None,
        }
    }
}

/// A k-way merge of sorted runs: holds one item per run.
struct Merge<T> {
    /// Ties go to the lower run index, which keeps the merge deterministic.
    heap: BinaryHeap<Reverse<(T, usize)>>,
    runs: Vec<RunReader>,
}

impl<T: Record> Merge<T> {
    fn open(paths: Vec<PathBuf>) -> Result<Self> {
        let mut merge = Merge {
            heap: BinaryHeap::with_capacity(paths.len()),
            runs: Vec::with_capacity(paths.len()),
        };
        for (i, path) in paths.into_iter().enumerate() {
            let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
            let mut run = RunReader {
                path,
                reader: BufReader::new(file),
                scratch: Vec::new(),
            };
            if let Some(item) = run.next()? {
                merge.heap.push(Reverse((item, i)));
            }
            merge.runs.push(run);
        }
        Ok(merge)
    }

    fn next_item(&mut self) -> Result<Option<T>> {
        let Some(Reverse((item, i))) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(next) = self.runs[i].next()? {
            self.heap.push(Reverse((next, i)));
        }
        Ok(Some(item))
    }
}

struct RunReader {
    path: PathBuf,
    reader: BufReader<File>,
    scratch: Vec<u8>,
}

impl RunReader {
    fn next<T: Record>(&mut self) -> Result<Option<T>> {
        let mut len = [0u8; 4];
        match read_exact_or_eof(&mut self.reader, &mut len) {
            Ok(false) => {
                // Done with this run: give its disk space back now rather
                // than when the whole merge ends.
                let _ = std::fs::remove_file(&self.path);
                return Ok(None);
            }
            Ok(true) => {}
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        self.scratch.resize(u32::from_le_bytes(len) as usize, 0);
        self.reader
            .read_exact(&mut self.scratch)
            .map_err(|e| Error::io(&self.path, e))?;
        T::decode(&self.scratch).map(Some).ok_or_else(|| {
            Error::io(
                &self.path,
                io::Error::new(io::ErrorKind::InvalidData, "undecodable record"),
            )
        })
    }
}

fn write_record<T: Record>(
    out: &mut impl Write,
    item: &T,
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    scratch.clear();
    item.encode(scratch);
    let len = u32::try_from(scratch.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(scratch)
}

/// Fills `buf`, or returns `Ok(false)` at a clean end of input; an end in the
/// middle of `buf` is an error (a truncated run).
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Helpers for [`Record`] implementations that hold several fields.
pub mod codec {
    /// Appends `bytes` with a little-endian u32 length in front.
    pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }

    pub fn put_u64(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// Reads back what `put_bytes` wrote, advancing `input`.
    pub fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(input.get(..4)?.try_into().ok()?) as usize;
        let bytes = input.get(4..4 + len)?;
        *input = &input[4 + len..];
        Some(bytes)
    }

    pub fn take_u64(input: &mut &[u8]) -> Option<u64> {
        let v = u64::from_le_bytes(input.get(..8)?.try_into().ok()?);
        *input = &input[8..];
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn dir_is_empty(dir: &Path) -> bool {
        std::fs::read_dir(dir).unwrap().next().is_none()
    }

    fn sort_all(items: &[String], run_size: usize, fan_in: usize, spill: &Path) -> Vec<String> {
        let mut sorter = ExternalSort::new(run_size).fan_in(fan_in).spill_in(spill);
        for s in items {
            sorter.push(s.clone()).unwrap();
        }
        sorter.finish().unwrap().collect::<Result<_>>().unwrap()
    }

    #[test]
    fn fits_in_one_run_without_touching_the_disk() {
        let spill = tempfile::tempdir().unwrap();
        let mut sorter = ExternalSort::new(10).spill_in(spill.path());
        for s in ["b", "c", "a"] {
            sorter.push(s.to_string()).unwrap();
        }
        let sorted = sorter.finish().unwrap();
        assert!(dir_is_empty(spill.path()));
        let out: Vec<String> = sorted.collect::<Result<_>>().unwrap();
        assert_eq!(out, ["a", "b", "c"]);
    }

    #[test]
    fn empty_input() {
        let spill = tempfile::tempdir().unwrap();
        assert!(sort_all(&[], 1, 2, spill.path()).is_empty());
    }

    #[test]
    fn sorts_bytewise_not_by_locale_or_case() {
        let spill = tempfile::tempdir().unwrap();
        let items: Vec<String> = ["b", "B", "a_", "a", "ckp/x", "ck", "é", "z"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = sort_all(&items, 2, 2, spill.path());
        assert_eq!(out, ["B", "a", "a_", "b", "ck", "ckp/x", "z", "é"]);
    }

    #[test]
    fn runs_are_removed_when_done_or_dropped() {
        let spill = tempfile::tempdir().unwrap();
        let mut sorter = ExternalSort::new(2).spill_in(spill.path());
        for i in 0..10 {
            sorter.push(format!("{:02}", 9 - i)).unwrap();
        }
        assert!(!dir_is_empty(spill.path()));
        drop(sorter);
        assert!(dir_is_empty(spill.path()), "a dropped sorter leaves runs");

        let mut sorter = ExternalSort::new(2).spill_in(spill.path());
        for i in 0..10 {
            sorter.push(format!("{:02}", 9 - i)).unwrap();
        }
        let mut sorted = sorter.finish().unwrap();
        assert_eq!(sorted.next().unwrap().unwrap(), "00");
        drop(sorted);
        assert!(dir_is_empty(spill.path()), "a dropped merge leaves runs");
    }

    #[test]
    fn a_truncated_run_is_an_error_not_a_short_listing() {
        let spill = tempfile::tempdir().unwrap();
        let mut sorter = ExternalSort::new(2).spill_in(spill.path());
        for s in ["d", "c", "b", "a"] {
            sorter.push(s.to_string()).unwrap();
        }
        let dir = std::fs::read_dir(spill.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        for run in std::fs::read_dir(&dir).unwrap() {
            let run = run.unwrap().path();
            let len = std::fs::metadata(&run).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&run)
                .unwrap()
                .set_len(len - 1)
                .unwrap();
        }
        let mut sorted = sorter.finish().unwrap();
        let results: Vec<Result<String>> = sorted.by_ref().collect();
        assert!(results.iter().any(|r| r.is_err()), "{results:?}");
        assert!(sorted.next().is_none(), "continues after an error");
    }

    /// Random names (with duplicates, empty names and multi-byte chars), tiny
    /// runs and fan-ins: the output is the std sort of the input.
    #[test]
    fn matches_std_sort_on_random_input() {
        let spill = tempfile::tempdir().unwrap();
        let alphabet: Vec<char> = "ab_/0.zé\u{1F600}".chars().collect();
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        for case in 0..300 {
            let n = rng.random_range(0..400);
            let items: Vec<String> = (0..n)
                .map(|_| {
                    let len = rng.random_range(0..8);
                    (0..len)
                        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                        .collect()
                })
                .collect();
            let run_size = rng.random_range(1..12);
            let fan_in = rng.random_range(2..6);
            let mut expected = items.clone();
            expected.sort();
            assert_eq!(
                sort_all(&items, run_size, fan_in, spill.path()),
                expected,
                "case {case}: n={n} run_size={run_size} fan_in={fan_in}"
            );
            assert!(dir_is_empty(spill.path()));
        }
    }

    #[test]
    fn codec_round_trips() {
        let mut out = Vec::new();
        codec::put_u64(&mut out, 42);
        codec::put_bytes(&mut out, b"name");
        codec::put_bytes(&mut out, b"");
        let mut input = out.as_slice();
        assert_eq!(codec::take_u64(&mut input), Some(42));
        assert_eq!(codec::take_bytes(&mut input), Some(&b"name"[..]));
        assert_eq!(codec::take_bytes(&mut input), Some(&b""[..]));
        assert!(input.is_empty());
        assert_eq!(codec::take_u64(&mut input), None);
    }
}
