//! The raw request ceiling of an S3 endpoint, for scripts/bench.sh: PUTs
//! then GETs objects with the names and sizes of a given tree's files, sent
//! from one buffer in memory (no disk, no hashing, no signing of the
//! payload), at several numbers of requests in flight. What mo-br and its
//! peers do on the same tree is compared with the best of these.
//!
//! Named as in the tree (under `ceiling-<n>/`), as every tool that stores
//! the tree names them: what a PUT costs the server grows with its key
//! (s3s-fs keeps each object as a file under the key's directories and its
//! metadata under a file named after the key), so numbered keys in one
//! directory are not the ceiling of storing this tree. Seen on the 20,000
//! objects of 16 KiB, 32 in flight: 3.98 and 5.03 s numbered, 4.99 and
//! 5.73 s named.
//!
//! `s3ceiling --endpoint URL --bucket B --key K --secret S --tree DIR
//! [--inflight 32,64,128]` (built with the workspace's binaries)
//! prints one line per in-flight count and a last line
//! `best put_s=<s> get_s=<s> objects=<n> bytes=<b>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};

struct Args {
    endpoint: String,
    bucket: String,
    key: String,
    secret: String,
    tree: PathBuf,
    inflight: Vec<usize>,
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut endpoint, mut bucket, mut key, mut secret, mut tree) = (None, None, None, None, None);
    let mut inflight = vec![32, 64, 128];
    while let Some(a) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--endpoint" => endpoint = Some(val()),
            "--bucket" => bucket = Some(val()),
            "--key" => key = Some(val()),
            "--secret" => secret = Some(val()),
            "--tree" => tree = Some(PathBuf::from(val())),
            "--inflight" => {
                inflight = val()
                    .split(',')
                    .map(|n| n.parse().expect("--inflight takes numbers"))
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    Args {
        endpoint: endpoint.expect("--endpoint"),
        bucket: bucket.expect("--bucket"),
        key: key.expect("--key"),
        secret: secret.expect("--secret"),
        tree: tree.expect("--tree"),
        inflight,
    }
}

/// Every file under `dir`: its name relative to `root`, '/'-separated, and
/// its size.
fn files(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    for e in std::fs::read_dir(dir).expect("read tree") {
        let e = e.expect("dir entry");
        let t = e.file_type().expect("file type");
        if t.is_dir() {
            files(root, &e.path(), out);
        } else if t.is_file() {
            let path = e.path();
            let name: Vec<String> = path
                .strip_prefix(root)
                .expect("under the tree")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((name.join("/"), e.metadata().expect("metadata").len()));
        }
    }
}

#[tokio::main]
async fn main() {
    let args = parse();
    let mut tree = Vec::new();
    files(&args.tree, &args.tree, &mut tree);
    let total: u64 = tree.iter().map(|(_, size)| size).sum();
    let max = tree.iter().map(|(_, size)| *size).max().unwrap_or(0) as usize;
    let buf = Bytes::from(vec![0x5au8; max]);
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&args.endpoint)
            .with_bucket_name(&args.bucket)
            .with_region("us-east-1")
            .with_access_key_id(&args.key)
            .with_secret_access_key(&args.secret)
            .with_allow_http(true)
            .with_unsigned_payload(true)
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .build()
            .expect("S3 client"),
    );
    let (mut best_put, mut best_get) = (f64::MAX, f64::MAX);
    for &n in &args.inflight {
        let prefix = format!("ceiling-{n}");
        let t = Instant::now();
        futures::stream::iter(&tree)
            .map(|(name, len)| {
                let store = store.clone();
                let body = buf.slice(..*len as usize);
                let key = Key::from(format!("{prefix}/{name}"));
                async move { store.put(&key, PutPayload::from(body)).await.map(|_| ()) }
            })
            .buffer_unordered(n)
            .try_collect::<Vec<()>>()
            .await
            .expect("put");
        let put = t.elapsed().as_secs_f64();
        let t = Instant::now();
        futures::stream::iter(&tree)
            .map(|(name, _)| {
                let store = store.clone();
                let key = Key::from(format!("{prefix}/{name}"));
                async move {
                    let mut s = store.get(&key).await?.into_stream();
                    let mut got = 0usize;
                    while let Some(chunk) = s.next().await {
                        got += chunk?.len();
                    }
                    Ok::<usize, object_store::Error>(got)
                }
            })
            .buffer_unordered(n)
            .try_fold(0u64, |acc, got| async move { Ok(acc + got as u64) })
            .await
            .map(|got| assert_eq!(got, total, "GETs returned fewer bytes than PUT"))
            .expect("get");
        let get = t.elapsed().as_secs_f64();
        println!("inflight={n} put_s={put:.3} get_s={get:.3}");
        best_put = best_put.min(put);
        best_get = best_get.min(get);
    }
    println!(
        "best put_s={best_put:.3} get_s={best_get:.3} objects={} bytes={total}",
        tree.len()
    );
}
