//! `mo-sim verify`: is a data dir restorable at a cut?

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::ids::BackupData;
use crate::node::{parse_ckp_body, parse_ckp_name, read_ledger, CkpMeta, Hlc, Layout, LedgerEntry};

pub struct Outcome {
    pub summary: String,
    pub problems: Vec<String>,
}

/// Checks every ckp meta with end <= cut is intact, and that every object
/// the checkpoint chain at the cut references (newest global with end <= cut
/// plus the incrementals after it up to the cut) is present and byte-exact
/// (sha256 from the ledger; size from the meta for objects mo-sim did not write).
/// With `hk_min`, also that the LOCAL root holds an `hk_data` whose NextID
/// is at least that (a restore that lost the HAKeeper watermarks reuses IDs).
pub fn verify(
    data_dir: &Path,
    cut: Hlc,
    ledger_path: &Path,
    hk_min: Option<u64>,
) -> anyhow::Result<Outcome> {
    let layout = Layout::detect(data_dir, false)?;
    let ledger: BTreeMap<String, LedgerEntry> = read_ledger(ledger_path)?;
    let mut problems = Vec::new();
    let mut metas: Vec<CkpMeta> = Vec::new();
    let ckp_dir = layout.shared.join("ckp");
    let mut names: Vec<String> = match fs::read_dir(&ckp_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => anyhow::bail!("{}: {e}", ckp_dir.display()),
    };
    names.sort();
    let mut by_sha = 0usize;
    for name in names {
        let Some((_, end, _)) = parse_ckp_name(&name) else {
            continue;
        };
        if end > cut {
            continue;
        }
        let rel = format!("ckp/{name}");
        let raw = fs::read(ckp_dir.join(&name))?;
        if let Some(l) = ledger.get(&rel) {
            if hex::encode(Sha256::digest(&raw)) != l.sha256 {
                problems.push(format!("corrupt: {rel} (sha256 differs from the ledger)"));
                continue;
            }
        }
        let Some(text) = layout.decode(&raw) else {
            problems.push(format!("corrupt: {rel} (bad DISK block checksum)"));
            continue;
        };
        match parse_ckp_body(&name, &String::from_utf8_lossy(&text)) {
            Some(m) if m.declared.is_none_or(|n| n == m.refs.len()) => metas.push(m),
            Some(m) => problems.push(format!(
                "corrupt: {rel} (declares {} objects, lists {})",
                m.declared.unwrap_or(0),
                m.refs.len()
            )),
            None => problems.push(format!("corrupt: {rel} (not a checkpoint meta)")),
        }
    }
    let global_end = metas.iter().filter(|m| m.is_global()).map(|m| m.end).max();
    let chain: Vec<&CkpMeta> = metas
        .iter()
        .filter(|m| !m.compacted)
        .filter(|m| match global_end {
            Some(g) => (m.is_global() && m.end == g) || (!m.is_global() && m.end > g),
            None => true,
        })
        .collect();
    if chain.is_empty() {
        problems.push(format!("missing: no checkpoint meta with end <= {cut}"));
    }
    let mut refs: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for m in &chain {
        for r in &m.refs {
            refs.entry(r.name.clone()).or_insert(r.size);
        }
    }
    let mut seen = BTreeSet::new();
    for (name, size) in &refs {
        let path = layout.shared.join(name);
        let raw = match fs::read(&path) {
            Ok(b) => b,
            Err(_) => {
                problems.push(format!("missing: {name}"));
                continue;
            }
        };
        if let Some(l) = ledger.get(name) {
            if hex::encode(Sha256::digest(&raw)) != l.sha256 {
                problems.push(format!("corrupt: {name} (sha256 differs from the ledger)"));
                continue;
            }
            by_sha += 1;
        } else if let Some(s) = size {
            if raw.len() as u64 != layout.stored_size(*s) {
                problems.push(format!(
                    "corrupt: {name} ({} bytes, checkpoint says {} content bytes)",
                    raw.len(),
                    s
                ));
                continue;
            }
        }
        seen.insert(name);
    }
    let mut hk_note = String::new();
    if let Some(min) = hk_min {
        let hk = layout.local().join("hk_data");
        match fs::read(&hk) {
            Err(_) => problems.push("missing: hk_data".to_string()),
            Ok(raw) => match BackupData::decode(&raw) {
                None => problems.push("corrupt: hk_data (not a BackupData message)".to_string()),
                Some(bd) if bd.next_id < min => {
                    problems.push(format!("corrupt: hk_data (NextID {} < {min})", bd.next_id))
                }
                Some(bd) => hk_note = format!(", hk_data NextID {} >= {min}", bd.next_id),
            },
        }
    }
    Ok(Outcome {
        summary: format!(
            "ok: cut {cut}: {} ckp metas intact, chain of {} metas{}, {} objects present ({} checked by sha256){hk_note}",
            metas.len(),
            chain.len(),
            global_end.map(|g| format!(" from global {g}")).unwrap_or_default(),
            seen.len(),
            by_sha
        ),
        problems,
    })
}
