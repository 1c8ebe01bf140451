//! The storage backends against a real S3-compatible server (s3s-fs).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use mo_br_storage::{ByteStream, Credentials, Error, Location, Storage};
use mo_br_tests::faultproxy::FaultProxy;
use mo_br_tests::s3server::{free_port, S3Server};
use sha2::{Digest, Sha256};

async fn open(loc: mo_br_storage::S3Location, creds: &Credentials) -> Box<dyn Storage> {
    mo_br_storage::open(&Location::S3(loc), creds)
        .await
        .expect("open s3 storage")
}

/// Deterministic pseudo-random bytes, cheap to make and poor to compress.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Streams `data` in uneven chunks, as a reader of a file would.
fn stream(data: Bytes, chunk: usize) -> ByteStream {
    let chunks: Vec<_> = (0..data.len())
        .step_by(chunk)
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

async fn names(s: &dyn Storage, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .list(prefix)
        .map_ok(|e| e.name)
        .try_collect()
        .await
        .expect("list");
    v.sort();
    v
}

#[tokio::test]
async fn small_round_trip() {
    let srv = S3Server::start().unwrap();
    let s = open(srv.location("/backups/"), &srv.credentials()).await;
    s.probe().await.unwrap();
    assert!(s.describe().contains(&srv.endpoint()));

    let body = Bytes::from_static(b"hello s3");
    let w = s
        .put(
            "b1/manifest.json",
            stream(body.clone(), 3),
            Some(sha(&body)),
        )
        .await
        .unwrap();
    assert_eq!((w.size, w.sha256), (8, sha(&body)));
    assert_eq!(s.head("b1/manifest.json").await.unwrap(), Some(8));
    assert_eq!(s.get_bytes("b1/manifest.json").await.unwrap(), body);
    // Stored under the prefix, as a plain file in the server's directory.
    let on_disk = std::fs::read(
        srv.root()
            .join(srv.bucket())
            .join("backups/b1/manifest.json"),
    );
    assert_eq!(on_disk.unwrap(), body);

    let w = s.put_bytes("empty", Bytes::new()).await.unwrap();
    assert_eq!(w.size, 0);
    assert_eq!(s.get_bytes("empty").await.unwrap(), Bytes::new());

    assert!(matches!(s.get("missing").await, Err(Error::NotFound(_))));
    assert!(matches!(
        s.get_bytes("missing").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(s.head("missing").await.unwrap(), None);
    assert!(matches!(
        s.put_bytes("../x", body).await,
        Err(Error::BadName(_))
    ));
}

/// Beyond 64 MiB a body goes as a multipart upload (up to it, as one PUT
/// while the process's budget holds it).
const OVER_SINGLE_PUT: usize = 64 * 1024 * 1024 + 1;

#[tokio::test]
async fn large_multipart_round_trip() {
    let srv = S3Server::start().unwrap();
    let s = open(srv.location("p"), &srv.credentials()).await;
    let len = OVER_SINGLE_PUT + 12345;
    let body = Bytes::from(data(len, 7));
    let digest = sha(&body);

    let w = s
        .put(
            "b1/data/big.bin",
            stream(body.clone(), 1 << 20),
            Some(digest),
        )
        .await
        .unwrap();
    assert_eq!((w.size, w.sha256), (len as u64, digest));
    assert_eq!(s.head("b1/data/big.bin").await.unwrap(), Some(len as u64));

    let mut hasher = Sha256::new();
    let mut got = 0usize;
    let mut chunks = s.get("b1/data/big.bin").await.unwrap();
    while let Some(c) = chunks.try_next().await.unwrap() {
        got += c.len();
        hasher.update(&c);
    }
    assert_eq!(got, len);
    assert_eq!(<[u8; 32]>::from(hasher.finalize()), digest);
}

/// The ETag the server gave an object: a multipart upload's ends in `-<parts>`.
async fn e_tag(srv: &S3Server, key: &str) -> String {
    use object_store::ObjectStoreExt;
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(srv.endpoint())
        .with_bucket_name(srv.bucket())
        .with_region("us-east-1")
        .with_access_key_id(srv.access_key())
        .with_secret_access_key(srv.secret_key())
        .with_allow_http(true)
        .build()
        .unwrap();
    let meta = raw
        .head(&object_store::path::Path::from(key))
        .await
        .unwrap();
    meta.e_tag.expect("s3s-fs gives every object an ETag")
}

/// A body between the first part's size and 64 MiB goes as one PUT; past
/// 64 MiB as parts.
#[tokio::test]
async fn mid_sized_bodies_go_as_one_put() {
    let srv = S3Server::start().unwrap();
    let s = open(srv.location(""), &srv.credentials()).await;
    for (key, len) in [("mid", (20 << 20) + 5), ("big", OVER_SINGLE_PUT)] {
        let body = Bytes::from(data(len, 11));
        let w = s
            .put(key, stream(body.clone(), 1 << 20), None)
            .await
            .unwrap();
        assert_eq!((w.size, w.sha256), (len as u64, sha(&body)));
        let tag = e_tag(&srv, key).await;
        assert_eq!(tag.contains('-'), key == "big", "{key}: ETag {tag}");
    }
}

#[tokio::test]
async fn checksum_mismatch_leaves_nothing() {
    let srv = S3Server::start().unwrap();
    let s = open(srv.location(""), &srv.credentials()).await;
    let wrong = sha(b"something else");

    let small = Bytes::from_static(b"small body");
    let err = s
        .put("small", stream(small, 4), Some(wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert_eq!(s.head("small").await.unwrap(), None);

    // Held whole, then sent as one PUT: it must not be sent.
    let mid = Bytes::from(data(20 * 1024 * 1024, 3));
    let err = s
        .put("mid", stream(mid, 1 << 20), Some(wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert_eq!(s.head("mid").await.unwrap(), None);

    // Large enough for multipart: the upload must be aborted, not completed.
    let big = Bytes::from(data(OVER_SINGLE_PUT + 3, 3));
    let err = s
        .put("big", stream(big, 1 << 20), Some(wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert_eq!(s.head("big").await.unwrap(), None);
    assert!(names(s.as_ref(), "").await.is_empty());
}

/// A multipart put dropped half-way (its caller gone) aborts the upload:
/// the parts already sent do not stay on the server.
#[tokio::test]
async fn cancelled_multipart_put_aborts_the_upload() {
    let srv = S3Server::start().unwrap();
    let s = std::sync::Arc::new(open(srv.location(""), &srv.credentials()).await);
    // s3s-fs keeps an upload's parts and its record as hidden files in its root.
    let pending = |root: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(root)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".upload"))
            .collect()
    };
    let put = {
        let s = s.clone();
        tokio::spawn(async move {
            // More than one PUT takes, then a body that never ends.
            let body: ByteStream = Box::pin(
                stream(Bytes::from(data(OVER_SINGLE_PUT + (9 << 20), 5)), 1 << 20)
                    .chain(futures::stream::pending()),
            );
            s.put("stalled", body, None).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pending(srv.root()).iter().any(|n| n.contains(".part-")) {
        assert!(Instant::now() < deadline, "no part was uploaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    put.abort();
    assert!(put.await.unwrap_err().is_cancelled());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pending(srv.root()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the upload was left: {:?}",
            pending(srv.root())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.head("stalled").await.unwrap(), None);
}

#[tokio::test]
async fn list_with_prefix_and_delete() {
    let srv = S3Server::start().unwrap();
    let s = open(srv.location("root"), &srv.credentials()).await;
    // An object outside the storage prefix must stay invisible.
    let other = open(srv.location(""), &srv.credentials()).await;
    other
        .put_bytes("elsewhere", Bytes::from_static(b"o"))
        .await
        .unwrap();

    for n in ["b1/data/1", "b1/data/2", "b1/manifest", "b10/manifest", "c"] {
        s.put_bytes(n, Bytes::from(n.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    assert_eq!(
        names(s.as_ref(), "").await,
        ["b1/data/1", "b1/data/2", "b1/manifest", "b10/manifest", "c"]
    );
    assert_eq!(
        names(s.as_ref(), "b1/").await,
        ["b1/data/1", "b1/data/2", "b1/manifest"]
    );
    assert_eq!(
        names(s.as_ref(), "b1").await,
        ["b1/data/1", "b1/data/2", "b1/manifest", "b10/manifest"]
    );
    assert_eq!(
        names(s.as_ref(), "b1/data/").await,
        ["b1/data/1", "b1/data/2"]
    );
    assert!(names(s.as_ref(), "zzz/").await.is_empty());
    let sizes: Vec<u64> = s
        .list("b1/manifest")
        .map_ok(|e| e.size)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(sizes, [11]);

    s.delete("b1/data/1").await.unwrap();
    s.delete("b1/data/1").await.unwrap();
    s.delete("never/existed").await.unwrap();
    assert_eq!(s.head("b1/data/1").await.unwrap(), None);
    assert_eq!(names(s.as_ref(), "b1/data/").await, ["b1/data/2"]);
    assert_eq!(names(other.as_ref(), "").await.len(), 5);
}

/// A directory's own objects, page after page, not what lies deeper; the
/// first thing under a prefix, one level down; nothing outside the storage.
#[tokio::test]
async fn one_level_listing_and_first_under() {
    let srv = S3Server::start().unwrap();
    let s = open(srv.location("root"), &srv.credentials()).await;
    let other = open(srv.location(""), &srv.credentials()).await;
    assert_eq!(s.first_under("").await.unwrap(), None);
    other
        .put_bytes("elsewhere", Bytes::from_static(b"o"))
        .await
        .unwrap();
    assert_eq!(s.first_under("").await.unwrap(), None);
    s.put_bytes("d/sub/deep", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(s.first_under("").await.unwrap().as_deref(), Some("d"));
    assert_eq!(s.first_under("d/").await.unwrap().as_deref(), Some("d/sub"));
    assert_eq!(s.first_under("e/").await.unwrap(), None);
    // More than a page: S3 (and s3s-fs) answer at most 1,000 keys a request.
    futures::stream::iter(0..1005)
        .map(|i| {
            let s = &s;
            async move {
                s.put_bytes(&format!("d/{i:04}"), Bytes::from(vec![7; i % 5]))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let mut got: Vec<(String, u64)> = s
        .list_dir("d/")
        .map_ok(|e| (e.name, e.size))
        .try_collect()
        .await
        .unwrap();
    got.sort();
    let want: Vec<(String, u64)> = (0..1005)
        .map(|i| (format!("d/{i:04}"), (i % 5) as u64))
        .collect();
    assert_eq!(got, want);
    let top: Vec<String> = other
        .list_dir("")
        .map_ok(|e| e.name)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(top, ["elsewhere"]);
    assert!(matches!(
        s.list_dir("d").next().await,
        Some(Err(Error::BadName(_)))
    ));
    assert!(matches!(s.first_under("../").await, Err(Error::BadName(_))));
}

/// Storages opened one after another (an agent opens one per shard) share
/// their connections: a later one reuses those an earlier one opened,
/// rather than connecting anew and closing them all at its end.
#[test]
fn storages_opened_in_turn_share_connections() {
    let srv = S3Server::start().unwrap();
    // The proxy runs its own runtime: started and dropped outside the test's.
    let proxy = FaultProxy::start(([127, 0, 0, 1], srv.port()).into(), 1_000_000).unwrap();
    let location = mo_br_storage::S3Location {
        endpoint: proxy.endpoint(),
        ..srv.location("shared")
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let first = open(location.clone(), &srv.credentials()).await;
        for i in 0..8 {
            first
                .put_bytes(&format!("o{i}"), Bytes::from(vec![i as u8; 1000]))
                .await
                .unwrap();
        }
        drop(first);
        for _ in 0..6 {
            let s = open(location.clone(), &srv.credentials()).await;
            let reads = (0..8).map(|i| {
                let s = &s;
                async move { s.get_bytes(&format!("o{i}")).await }
            });
            for (i, got) in futures::future::join_all(reads)
                .await
                .into_iter()
                .enumerate()
            {
                assert_eq!(got.unwrap(), Bytes::from(vec![i as u8; 1000]));
            }
        }
    });
    // 8 PUTs one at a time, then 6 storages × 8 GETs at once: a client per
    // storage would have made 1 + 6 × 8 connections; shared, the writes
    // need one and the reads (another kind of client) at most 8.
    assert_eq!(proxy.requests(), 8 + 6 * 8);
    assert!(
        proxy.connections() <= 12,
        "{} connections for {} requests",
        proxy.connections(),
        proxy.requests()
    );
}

#[tokio::test]
async fn probe_dead_endpoint_is_unreachable_quickly() {
    let port = free_port().unwrap();
    let loc = mo_br_storage::S3Location {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: "b".into(),
        ..Default::default()
    };
    let creds = Credentials {
        access_key_id: "k".into(),
        secret_access_key: "s".into(),
        ..Default::default()
    };
    let s = open(loc, &creds).await;
    let t = Instant::now();
    let err = s.probe().await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn probe_wrong_secret_is_auth() {
    let srv = S3Server::start().unwrap();
    let creds = Credentials {
        access_key_id: srv.access_key().into(),
        secret_access_key: "wrong-secret".into(),
        ..Default::default()
    };
    let s = open(srv.location("x"), &creds).await;
    let t = Instant::now();
    let err = s.probe().await.unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(!format!("{err} {s:?}").contains("wrong-secret"));

    let unknown = Credentials {
        access_key_id: "nobody".into(),
        secret_access_key: srv.secret_key().into(),
        ..Default::default()
    };
    let err = open(srv.location(""), &unknown)
        .await
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
}

#[tokio::test]
async fn probe_missing_bucket() {
    let srv = S3Server::start().unwrap();
    let mut loc = srv.location("");
    loc.bucket = "no-such-bucket".into();
    let s = open(loc.clone(), &srv.credentials()).await;
    let err = s.probe().await.unwrap_err();
    assert!(matches!(err, Error::NoBucket { .. }), "{err}");

    srv.new_bucket("no-such-bucket").unwrap();
    s.probe().await.unwrap();
}

#[tokio::test]
async fn bad_config_rejected() {
    let mut loc = mo_br_storage::S3Location {
        endpoint: "http://127.0.0.1:1".into(),
        bucket: "b".into(),
        compression: "zstd".into(),
        ..Default::default()
    };
    let creds = Credentials::default();
    let err = mo_br_storage::open(&Location::S3(loc.clone()), &creds)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("zstd")),
        "{err}"
    );

    loc.compression = "none".into();
    loc.role_arn = "arn:aws:iam::123456789012:role/backup".into();
    let with_keys = Credentials {
        access_key_id: "k".into(),
        secret_access_key: "s".into(),
        ..Default::default()
    };
    let err = mo_br_storage::open(&Location::S3(loc), &with_keys)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("role_arn")),
        "{err}"
    );
}
