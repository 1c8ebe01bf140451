//! What an agent reads from its host's disk: the node it serves and nothing
//! else. That is its data dir, its launch configs (`--launch_config`, by
//! default `etc/launch/launch.toml` beside `mo-data`, as MatrixOne lays
//! out its directory) and the SHARED directory their TN config names.
//! Requests naming anything else are refused, whoever sends them: a
//! coordinator's certificate lets it give work, not read the host.

use std::path::{Path, PathBuf};

use crate::inventory;
use crate::{Error, Result};

#[derive(Debug, Clone, Default)]
pub struct Served {
    /// Canonical directories whose whole tree may be read.
    dirs: Vec<PathBuf>,
    /// Canonical files that may be read (the launch configs).
    files: Vec<PathBuf>,
}

impl Served {
    /// The node of `data_dir` (its `mo-data`) and `launch_config`, either
    /// optional. Paths that do not exist are an error: an agent that cannot
    /// see its node's files at start would refuse every request later.
    pub fn node(data_dir: Option<&Path>, launch_config: Option<&Path>) -> Result<Served> {
        let mut served = Served::default();
        let data_dir = data_dir
            .map(|d| d.canonicalize().map_err(|e| Error::io(d, e)))
            .transpose()?;
        if let Some(d) = &data_dir {
            served.dirs.push(d.clone());
        }
        let launch = match launch_config {
            Some(l) => Some(l.canonicalize().map_err(|e| Error::io(l, e))?),
            None => data_dir
                .as_ref()
                .and_then(|d| d.parent())
                .map(|root| root.join("etc/launch/launch.toml"))
                .filter(|l| l.is_file()),
        };
        if let Some(launch) = launch {
            for (role, path) in inventory::launch_configs(&launch)? {
                // SHARED may live outside mo-data (its own disk).
                if let (true, Some(d)) = (role == "dn", &data_dir) {
                    let shared = inventory::shared_from_tn_config(&path, d).ok().flatten();
                    if let Some(dir) = shared.and_then(|s| s.dir.canonicalize().ok()) {
                        served.dirs.push(dir);
                    }
                }
                served.files.push(path.canonicalize().unwrap_or(path));
            }
        }
        Ok(served)
    }

    /// `path` as it is really read (links resolved), if the agent serves
    /// it; else why not, naming the path and what the agent serves.
    pub fn check(&self, path: &Path) -> std::result::Result<PathBuf, String> {
        let real = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if self.dirs.iter().any(|d| real.starts_with(d)) || self.files.contains(&real) {
            return Ok(real);
        }
        let through_link = self.dirs.iter().any(|d| path.starts_with(d));
        Err(if through_link {
            format!(
                "{} leads outside the node's files (to {}) through a symbolic link; \
                 it is not followed",
                path.display(),
                real.display()
            )
        } else {
            format!(
                "{} is not a file of the node this agent serves ({})",
                path.display(),
                self.describe()
            )
        })
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        if !self.files.is_empty() {
            parts.push(format!("{} launch configs", self.files.len()));
        }
        if parts.is_empty() {
            "nothing on this host: start it with --data_dir".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn only_the_nodes_files_are_served() {
        let dir = tempfile::tempdir().unwrap();
        inventory::tests::node(dir.path(), 3);
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        fs::write(&secret, "s").unwrap();
        let served = Served::node(Some(&dir.path().join("mo-data")), None).unwrap();

        let object = dir.path().join("mo-data/shared2/gc/x.fgc");
        assert!(served.check(&object).is_ok());
        // The launch configs beside mo-data, found without being named.
        assert!(served.check(&dir.path().join("etc/launch/tn.toml")).is_ok());
        let err = served.check(&secret).unwrap_err();
        assert!(err.contains("is not a file of the node"), "{err}");
        let err = served.check(Path::new("/etc/passwd")).unwrap_err();
        assert!(err.contains("/etc/passwd"), "{err}");
        // A link planted in the data dir does not lead out.
        let link = dir.path().join("mo-data/shared2/planted");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        let err = served.check(&link).unwrap_err();
        assert!(err.contains("through a symbolic link"), "{err}");
        // An agent told nothing serves nothing from disk.
        let err = Served::default().check(&object).unwrap_err();
        assert!(err.contains("start it with --data_dir"), "{err}");
    }
}
