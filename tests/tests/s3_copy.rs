//! Server-side copies between buckets of one S3 endpoint (a real s3s-fs),
//! and the per-endpoint request bound.
//!
//! s3s-fs 0.14 answers CopyObject without a checksum, so every copy here
//! settles its sha256 by reading the target back; the server-checksum path
//! is covered by the storage crate's unit tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use mo_br_storage::{
    endpoint_usage, set_endpoint_request_limit, ChecksumSource, CopyOptions, Credentials, Error,
    Location, S3Location, ServerSideCopier, Storage, Verify,
};
use mo_br_tests::s3server::S3Server;
use sha2::{Digest, Sha256};

const SRC_BUCKET: &str = "mo-shared";

/// Deterministic pseudo-random bytes, cheap to make and poor to compress.
fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

async fn open(loc: &S3Location, creds: &Credentials) -> Box<dyn Storage> {
    mo_br_storage::open(&Location::S3(loc.clone()), creds)
        .await
        .expect("open s3 storage")
}

/// A server with a SHARED-like source bucket (MatrixOne's `server/data`
/// prefix) beside the default target bucket.
fn server() -> (S3Server, S3Location) {
    let srv = S3Server::start().unwrap();
    srv.new_bucket(SRC_BUCKET).unwrap();
    let src = srv.location_in(SRC_BUCKET, "server/data");
    (srv, src)
}

/// Copies objects of several sizes, across buckets and inside one bucket
/// under other prefixes: the target holds the source's bytes, the recorded
/// sha256 is theirs, and no object byte went through this process for the
/// copy itself.
#[tokio::test]
async fn copies_across_buckets_and_prefixes() {
    let (srv, src_loc) = server();
    let creds = srv.credentials();
    let src = open(&src_loc, &creds).await;
    let objects = [
        ("0191a2b3-0000-7000-8000-000000000001_00000", data(0, 1)),
        ("0191a2b3-0000-7000-8000-000000000002_00001", data(1, 2)),
        (
            "0191a2b3-0000-7000-8000-000000000003_00001",
            data(10_000, 3),
        ),
        ("ckp/meta_0-0_1732000000000000000-1.ckp", data(3 << 20, 4)),
        // Above object_store's 8 MiB single PUT: the source is itself a
        // multipart object, whose ETag is not an MD5 of its bytes.
        (
            "0191a2b3-0000-7000-8000-000000000004_00002",
            data(9 << 20, 5),
        ),
    ];
    for (name, body) in &objects {
        src.put_bytes(name, body.clone()).await.unwrap();
    }

    let other_bucket = srv.location("backups/b1/tae");
    let same_bucket = srv.location_in(SRC_BUCKET, "backups/b2/tae");
    for dst_loc in [&other_bucket, &same_bucket] {
        let copier =
            ServerSideCopier::new(&src_loc, dst_loc, &creds, CopyOptions::default()).unwrap();
        let dst = open(dst_loc, &creds).await;
        for (name, body) in &objects {
            let size = body.len() as u64;
            let out = copier.copy(name, name, size).await.unwrap();
            assert_eq!(out.size, size, "{name}");
            assert_eq!(out.sha256, sha(body), "{name}");
            assert_eq!(out.parts, 0, "{name}");
            assert_eq!(out.copied_bytes, size, "{name}");
            // s3s-fs gives no checksum: the target was read back, once.
            assert_eq!(out.checksum_from, ChecksumSource::Reread, "{name}");
            assert_eq!(out.reread_bytes, size, "{name}");
            // The copy request itself carried only XML, whatever the size.
            assert!(
                out.wire_bytes < 1024,
                "{name}: {} wire bytes",
                out.wire_bytes
            );

            assert_eq!(&dst.get_bytes(name).await.unwrap(), body, "{name}");
            let file = srv
                .root()
                .join(&dst_loc.bucket)
                .join(&dst_loc.prefix)
                .join(name);
            assert_eq!(&std::fs::read(&file).unwrap(), body, "{}", file.display());
        }
    }
    // The source is untouched.
    for (name, body) in &objects {
        assert_eq!(&src.get_bytes(name).await.unwrap(), body);
    }

    // Another name on the way, and the convenience function.
    let dst_loc = srv.location("renamed");
    let (name, body) = &objects[2];
    let out =
        mo_br_storage::server_side_copy(&src_loc, &dst_loc, &creds, name, "x/y_00001", 10_000)
            .await
            .unwrap();
    assert_eq!(out.sha256, sha(body));
    let dst = open(&dst_loc, &creds).await;
    assert_eq!(&dst.get_bytes("x/y_00001").await.unwrap(), body);
}

/// A missing source is a NotFound naming it, in one request and in parts;
/// nothing is left behind on the target.
#[tokio::test]
async fn missing_source_is_not_found() {
    let (srv, src_loc) = server();
    let creds = srv.credentials();
    let dst_loc = srv.location("b1");
    let missing = "0191a2b3-0000-7000-8000-00000000dead_00001";

    let copier = ServerSideCopier::new(&src_loc, &dst_loc, &creds, CopyOptions::default()).unwrap();
    let err = copier.copy(missing, missing, 100).await.unwrap_err();
    match &err {
        Error::NotFound(what) => {
            assert!(
                what.contains(missing) && what.contains(SRC_BUCKET),
                "{what}"
            )
        }
        other => panic!("not NotFound: {other}"),
    }
    assert!(err.to_string().contains("server/data/"), "{err}");

    let parts = CopyOptions {
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        ..Default::default()
    };
    let copier = ServerSideCopier::new(&src_loc, &dst_loc, &creds, parts).unwrap();
    let err = copier.copy(missing, missing, 20 << 20).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(what) if what.contains(missing)),
        "{err}"
    );
    let dst = open(&dst_loc, &creds).await;
    assert_eq!(dst.head(missing).await.unwrap(), None);
    assert!(
        srv.pending_uploads().is_empty(),
        "{:?}",
        srv.pending_uploads()
    );

    // A missing target bucket is named as such.
    let nowhere = srv.location_in("no-such-bucket", "");
    src_loc_put(&srv, &src_loc, "present_00001", data(10, 9)).await;
    let copier = ServerSideCopier::new(&src_loc, &nowhere, &creds, CopyOptions::default()).unwrap();
    let err = copier
        .copy("present_00001", "present_00001", 10)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoBucket { .. }), "{err}");
}

async fn src_loc_put(srv: &S3Server, loc: &S3Location, name: &str, body: Bytes) {
    open(loc, &srv.credentials())
        .await
        .put_bytes(name, body)
        .await
        .unwrap();
}

/// Objects above the threshold go as UploadPartCopy ranges; the threshold
/// is lowered so that a few MiB exercise it. s3s-fs supports UploadPartCopy
/// with `x-amz-copy-source-range`.
#[tokio::test]
async fn multipart_copy_in_ranges() {
    let (srv, src_loc) = server();
    let creds = srv.credentials();
    let dst_loc = srv.location("backups/b1/tae");
    let options = CopyOptions {
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        parts_in_flight: 2,
        verify: Verify::ServerChecksumOrReread,
    };
    let copier = ServerSideCopier::new(&src_loc, &dst_loc, &creds, options).unwrap();
    let dst = open(&dst_loc, &creds).await;
    // Below, at, and above the threshold; exactly two parts; a short last part.
    for (i, size) in [(5 << 20) + 7, 6 << 20, 10 << 20, (13 << 20) + 12_345]
        .into_iter()
        .enumerate()
    {
        let name = format!("0191a2b3-0000-7000-8000-00000000010{i}_00001");
        let body = data(size, 100 + i as u64);
        src_loc_put(&srv, &src_loc, &name, body.clone()).await;
        let out = copier.copy(&name, &name, size as u64).await.unwrap();
        let want_parts = if size > 6 << 20 {
            size.div_ceil(5 << 20) as u32
        } else {
            0
        };
        assert_eq!(out.parts, want_parts, "{size}");
        assert_eq!(out.sha256, sha(&body), "{size}");
        assert_eq!(out.checksum_from, ChecksumSource::Reread);
        assert!(out.wire_bytes < 4096, "{} wire bytes", out.wire_bytes);
        assert_eq!(dst.get_bytes(&name).await.unwrap(), body, "{size}");
    }
    assert!(
        srv.pending_uploads().is_empty(),
        "{:?}",
        srv.pending_uploads()
    );

    // A source listed with the wrong size is refused before anything is
    // uploaded, never copied short.
    let name = "0191a2b3-0000-7000-8000-000000000100_00001";
    let err = copier.copy(name, "short", 7 << 20).await.unwrap_err();
    assert!(err.to_string().contains("listed with"), "{err}");
    assert_eq!(dst.head("short").await.unwrap(), None);
    // The same mistake in one CopyObject is caught on the target.
    let small = "0191a2b3-0000-7000-8000-000000000101_00001";
    let err = copier.copy(small, "short2", 100).await.unwrap_err();
    assert!(err.to_string().contains("listed with"), "{err}");
    assert_eq!(dst.head("short2").await.unwrap(), None);
}

/// A multipart copy dropped half-way (its job cancelled) aborts its upload:
/// the parts already copied do not stay on the server.
#[tokio::test]
async fn cancelled_multipart_copy_aborts_the_upload() {
    let (srv, src_loc) = server();
    let creds = srv.credentials();
    let dst_loc = srv.location("b1");
    let name = "0191a2b3-0000-7000-8000-000000000200_00001";
    let size = 100 << 20;
    src_loc_put(&srv, &src_loc, name, data(size, 7)).await;
    let options = CopyOptions {
        multipart_threshold: 6 << 20,
        part_size: 5 << 20,
        parts_in_flight: 1,
        ..Default::default()
    };
    let copier = Arc::new(ServerSideCopier::new(&src_loc, &dst_loc, &creds, options).unwrap());
    let copy = {
        let copier = copier.clone();
        tokio::spawn(async move { copier.copy(name, name, size as u64).await })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.pending_uploads().iter().any(|n| n.contains(".part-")) {
        assert!(
            !copy.is_finished(),
            "the copy ended before it could be cancelled"
        );
        assert!(Instant::now() < deadline, "no part was copied");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    copy.abort();
    assert!(copy.await.unwrap_err().is_cancelled());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !srv.pending_uploads().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the upload was left: {:?}",
            srv.pending_uploads()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dst = open(&dst_loc, &creds).await;
    assert_eq!(dst.head(name).await.unwrap(), None);
}

/// 300 concurrent reads, copies and writes on one endpoint bounded to 8
/// requests all finish, and no more than 8 ran at once. Half of them hold
/// a read stream open while they write to the same endpoint: the pattern
/// that deadlocked MatrixOne's backup when its connection pool was full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounded_requests_per_endpoint_do_not_deadlock() {
    let (srv, src_loc) = server();
    let creds = srv.credentials();
    const LIMIT: usize = 8;
    set_endpoint_request_limit(&srv.endpoint(), LIMIT).unwrap();

    let src: Arc<dyn Storage> = Arc::from(open(&src_loc, &creds).await);
    let dst_loc = srv.location("b1");
    let dst: Arc<dyn Storage> = Arc::from(open(&dst_loc, &creds).await);
    let copier = Arc::new(
        ServerSideCopier::new(&src_loc, &dst_loc, &creds, CopyOptions::default()).unwrap(),
    );
    let bodies: Vec<Bytes> = (0..20).map(|i| data(64 * 1024 + i, i as u64)).collect();
    for (i, b) in bodies.iter().enumerate() {
        src.put_bytes(&format!("obj_{i:05}"), b.clone())
            .await
            .unwrap();
    }
    let bodies = Arc::new(bodies);

    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..300usize {
        let (src, dst, copier, bodies) = (src.clone(), dst.clone(), copier.clone(), bodies.clone());
        tasks.spawn(async move {
            let i = t % bodies.len();
            let name = format!("obj_{i:05}");
            match t % 3 {
                0 => {
                    assert_eq!(src.get_bytes(&name).await.unwrap(), bodies[i]);
                }
                1 => {
                    let out = copier
                        .copy(&name, &format!("copy_{t}"), bodies[i].len() as u64)
                        .await
                        .unwrap();
                    assert_eq!(out.sha256, sha(&bodies[i]));
                }
                _ => {
                    // Read a little, then write while the stream is open.
                    let mut stream = src.get(&name).await.unwrap();
                    let first = stream.next().await.unwrap().unwrap();
                    dst.put_bytes(&format!("put_{t}"), first.clone())
                        .await
                        .unwrap();
                    copier
                        .copy(&name, &format!("copy_{t}"), bodies[i].len() as u64)
                        .await
                        .unwrap();
                    let mut n = first.len();
                    while let Some(c) = stream.next().await {
                        n += c.unwrap().len();
                    }
                    assert_eq!(n, bodies[i].len());
                }
            }
        });
    }
    let all = async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(180), all)
        .await
        .expect("requests bounded per endpoint deadlocked or stalled");

    let usage = endpoint_usage(&srv.endpoint()).unwrap();
    assert_eq!(usage.limit, LIMIT);
    assert_eq!(usage.in_flight, 0);
    assert!(
        usage.peak <= LIMIT && usage.peak > 1,
        "peak {} with limit {LIMIT}",
        usage.peak
    );
}
