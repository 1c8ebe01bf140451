use super::*;
use std::collections::BTreeMap;

const MB8: u64 = 8 * MIB;

fn opts(seed: u64, total: u64, backend: Backend) -> Options {
    Options {
        seed,
        total_bytes: total,
        backend,
    }
}

/// Every regular file under `dir` (relative, '/'-separated) with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .replace('\\', "/");
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn is_object_name(n: &str) -> bool {
    let Some((id, num)) = n.rsplit_once('_') else {
        return false;
    };
    uuid::Uuid::parse_str(id).is_ok() && num.len() == 5 && num.bytes().all(|b| b.is_ascii_digit())
}

fn is_hlc(s: &str) -> bool {
    Hlc::parse(s).is_some_and(|h| h.to_string() == s)
}

#[test]
fn crc32c_known_vector() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
    let long: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    // Slice-by-8 must agree with the bytewise path it shortcuts.
    let bytewise = {
        let mut crc = !0u32;
        for &b in &long {
            crc = CRC_TABLES[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
        }
        !crc
    };
    assert_eq!(crc32c(&long), bytewise);
}

#[test]
fn deterministic_per_seed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let ga = generate(a.path(), &opts(7, 3 * MIB, Backend::DiskV2)).unwrap();
    let gb = generate(b.path(), &opts(7, 3 * MIB, Backend::DiskV2)).unwrap();
    generate(c.path(), &opts(8, 3 * MIB, Backend::DiskV2)).unwrap();
    assert_eq!(ga.objects, gb.objects);
    assert_eq!(ga.bytes, gb.bytes);
    let (ta, tb, tc) = (tree(a.path()), tree(b.path()), tree(c.path()));
    assert!(ta == tb, "same seed must give an identical tree");
    assert_ne!(
        ta.keys().collect::<Vec<_>>(),
        tc.keys().collect::<Vec<_>>(),
        "a different seed must give different names"
    );
    assert_eq!(ga.bytes, ta.values().map(|v| v.len() as u64).sum::<u64>());
}

#[test]
fn size_within_ten_percent() {
    for backend in [Backend::DiskV2, Backend::Disk] {
        let d = tempfile::tempdir().unwrap();
        let g = generate(d.path(), &opts(42, MB8, backend)).unwrap();
        let lo = MB8 * 9 / 10;
        let hi = MB8 * 11 / 10;
        assert!(
            (lo..=hi).contains(&g.object_bytes),
            "{backend:?}: {}",
            g.object_bytes
        );
        assert!((lo..=hi).contains(&g.bytes), "{backend:?}: {}", g.bytes);
        let shared = names_in(&g.shared_dir);
        let objs: Vec<_> = shared.iter().filter(|n| is_object_name(n)).collect();
        assert_eq!(objs.len(), g.objects);
        let sizes: Vec<u64> = objs
            .iter()
            .map(|n| fs::metadata(g.shared_dir.join(n)).unwrap().len())
            .collect();
        assert!(
            sizes.iter().filter(|&&s| s <= 66 * KIB).count() > 20,
            "many small"
        );
        assert!(sizes.iter().any(|&s| s >= 256 * KIB), "some medium");
        // Several objects share one flush uuid.
        assert!(objs.iter().any(|n| n.ends_with("_00001")));
    }
}

#[test]
fn legacy_disk_framing_verifies() {
    let d = tempfile::tempdir().unwrap();
    let g = generate(d.path(), &opts(3, 2 * MIB, Backend::Disk)).unwrap();
    assert!(g.shared_dir.ends_with("mo-data/shared"));
    let mut checked = 0;
    for (rel, bytes) in tree(&g.shared_dir) {
        assert!(!bytes.is_empty(), "{rel}");
        for block in bytes.chunks(DISK_BLOCK) {
            assert!(block.len() > 4, "{rel}: runt block");
            let want = u32::from_le_bytes(block[..4].try_into().unwrap());
            assert_eq!(crc32c(&block[4..]), want, "{rel}");
            checked += 1;
        }
    }
    assert!(checked > 1000);
    let tn = fs::read_to_string(d.path().join("etc/launch/tn.toml")).unwrap();
    assert!(tn.contains("backend = \"DISK\"\ndata-dir = \"./mo-data/shared\""));
}

#[test]
fn layout_present() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let g = generate(root, &opts(1, 2 * MIB, Backend::DiskV2)).unwrap();
    assert_eq!(g.launch_config, root.join("etc/launch/launch.toml"));
    assert_eq!(g.data_dir, root.join("mo-data"));
    let launch = fs::read_to_string(&g.launch_config).unwrap();
    for f in ["log", "tn", "cn"] {
        assert!(launch.contains(&format!("\"./etc/launch/{f}.toml\"")));
        let cfg = fs::read_to_string(root.join(format!("etc/launch/{f}.toml"))).unwrap();
        assert!(cfg.contains("data-dir = \"./mo-data\""));
        assert!(cfg.contains(
            "name = \"SHARED\"\nbackend = \"DISK-V2\"\ndata-dir = \"./mo-data/shared2\""
        ));
        assert!(cfg.contains("name = \"ETL\"\nbackend = \"DISK-ETL\""));
    }

    let shared = root.join("mo-data/shared2");
    let ckp = names_in(&shared.join("ckp"));
    let metas: Vec<_> = ckp.iter().filter_map(|n| parse_ckp_meta_name(n)).collect();
    assert!(metas.len() >= 6, "{ckp:?}");
    assert!(metas.iter().any(|(s, _)| *s == Hlc::ZERO), "a global meta");
    assert!(ckp
        .iter()
        .any(|n| n.starts_with("meta_0-0_") && n.ends_with(".cpt")));
    for n in &ckp {
        let body = n.strip_prefix("meta_").unwrap();
        let body = body.rsplit_once('.').unwrap().0;
        let (s, e) = body.split_once('_').unwrap();
        assert!(is_hlc(s) && is_hlc(e), "{n}");
    }
    // Every object a meta names exists.
    let objects: Vec<_> = names_in(&shared)
        .into_iter()
        .filter(|n| is_object_name(n))
        .collect();
    for n in &ckp {
        let text = fs::read_to_string(shared.join("ckp").join(n)).unwrap();
        let named: Vec<_> = text
            .lines()
            .filter_map(|l| l.split(',').next())
            .filter(|o| is_object_name(o))
            .collect();
        assert!(!named.is_empty(), "{n}");
        assert!(named.iter().all(|o| objects.iter().any(|x| x == o)), "{n}");
    }

    let gc = names_in(&shared.join("gc"));
    for (prefix, ext) in [
        ("gc_", ".ckp"),
        ("gc_", ".fgc"),
        ("snap_", ".snap"),
        ("acct_", ".acct"),
    ] {
        let f = gc
            .iter()
            .find(|n| n.starts_with(prefix) && n.ends_with(ext));
        let f = f.unwrap_or_else(|| panic!("{prefix}*{ext} in {gc:?}"));
        let body = f.strip_prefix(prefix).unwrap().strip_suffix(ext).unwrap();
        let (s, e) = body.split_once('_').unwrap();
        assert!(is_hlc(s) && is_hlc(e), "{f}");
    }

    let tmp: Vec<_> = names_in(&shared)
        .into_iter()
        .filter(|n| n.starts_with(".tmp."))
        .collect();
    assert_eq!(tmp.len(), 1);
    assert!(skipped_by_design(&format!("mo-data/shared2/{}", tmp[0])));

    let all = tree(root);
    assert!(all
        .keys()
        .any(|k| k.starts_with("mo-data/logservice-data/") && k.contains("/logdb/")));
    assert!(all.keys().any(|k| k.contains("/snapshot-part-")));
    for dir in [
        "mo-data/local2/",
        "mo-data/etl/",
        "mo-data/tmp/",
        "mo-data/disk-cache/",
    ] {
        assert!(all.keys().any(|k| k.starts_with(dir)), "{dir}");
    }
    for k in all.keys() {
        let expect_skip = [
            "mo-data/local2/",
            "mo-data/etl/",
            "mo-data/tmp/",
            "mo-data/disk-cache/",
        ]
        .iter()
        .any(|d| k.starts_with(d))
            || k.contains("/.tmp.");
        assert_eq!(skipped_by_design(k), expect_skip, "{k}");
    }
}

#[test]
fn skipped_by_design_rules() {
    for p in [
        "mo-data/local/x",
        "mo-data/local2/a/b",
        "./mo-data/etl/x.csv",
        "mo-data/tmp/f",
        "mo-data/disk-cache/f",
        "mo-data/shared-cache/f",
        "mo-data/shared2/.tmp.abc",
        "mo-data/shared2/ckp/.tmp.abc",
        "etl/x",
    ] {
        assert!(skipped_by_design(p), "{p}");
    }
    for p in [
        "etc/launch/tn.toml",
        "mo-data/shared2/0191a2b3-0000-7000-8000-000000000000_00001",
        "mo-data/shared2/ckp/meta_0-0_1-1.ckp",
        "mo-data/shared/gc/gc_1-1_2-1.fgc",
        "mo-data/logservice-data/u/h/LOCK",
        "mo-data/shared2/tmpfile",
        "",
    ] {
        assert!(!skipped_by_design(p), "{p}");
    }
}

#[test]
fn grow_adds_objects_and_newer_meta() {
    let d = tempfile::tempdir().unwrap();
    let o = opts(5, 2 * MIB, Backend::DiskV2);
    let g = generate(d.path(), &o).unwrap();
    let newest_before = names_in(&g.shared_dir.join("ckp"))
        .iter()
        .filter_map(|n| parse_ckp_meta_name(n))
        .map(|(_, e)| e)
        .max()
        .unwrap();

    let added = grow(d.path(), &o, 1, 6, None).unwrap();
    assert_eq!(added.len(), 7);
    let (objs, meta) = added.split_at(6);
    for n in objs {
        assert!(is_object_name(n), "{n}");
        assert!(g.shared_dir.join(n).is_file());
    }
    let meta = meta[0].strip_prefix("ckp/").unwrap();
    let (start, end) = parse_ckp_meta_name(meta).unwrap();
    assert_eq!(start, newest_before.next());
    assert!(end > newest_before);
    let body = fs::read_to_string(g.shared_dir.join("ckp").join(meta)).unwrap();
    assert!(objs.iter().all(|n| body.contains(n.as_str())));

    // A second round is newer again and names nothing already present.
    let added2 = grow(d.path(), &o, 2, 3, None).unwrap();
    assert!(added2.iter().all(|n| !added.contains(n)));
    let (_, end2) = parse_ckp_meta_name(added2[3].strip_prefix("ckp/").unwrap()).unwrap();
    assert!(end2 > end);

    // Same tree + same round => same names.
    let d2 = tempfile::tempdir().unwrap();
    generate(d2.path(), &o).unwrap();
    assert_eq!(grow(d2.path(), &o, 1, 6, None).unwrap(), added);
}

#[test]
fn refuses_non_empty_and_ungenerated() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("x"), b"x").unwrap();
    assert!(matches!(
        generate(d.path(), &opts(1, MIB, Backend::DiskV2)),
        Err(Error::NotEmpty(_))
    ));
    assert!(matches!(
        grow(d.path(), &opts(1, MIB, Backend::DiskV2), 1, 1, None),
        Err(Error::NotGenerated { .. })
    ));
}

#[test]
fn sizes_parse() {
    assert_eq!(parse_size("12345").unwrap(), 12345);
    assert_eq!(parse_size("200MiB").unwrap(), 200 * MIB);
    assert_eq!(parse_size("1GiB").unwrap(), 1024 * MIB);
    assert_eq!(parse_size("1G").unwrap(), 1024 * MIB);
    assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
    assert!(parse_size("1.5GiB").is_err());
    assert!(parse_size("GiB").is_err());
    assert!(parse_size("10XB").is_err());
}

#[test]
fn big_plan_has_large_objects() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let budget = 1024 * MIB;
    let sizes = size_mix(&mut rng, budget);
    assert_eq!(sizes.iter().sum::<u64>(), budget);
    let large = sizes.iter().filter(|&&s| s >= 16 * MIB).count();
    assert!((3..=20).contains(&large), "{large}");
    assert!(
        sizes
            .iter()
            .filter(|&&s| (256 * KIB..=4 * MIB).contains(&s))
            .count()
            > 50
    );
    assert!(sizes.iter().filter(|&&s| s <= 64 * KIB).count() > 1000);
}
