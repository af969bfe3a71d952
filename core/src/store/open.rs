//! One store per file in a process: a second [`super::Store`] over a file already open is
//! refused ([`Error::AlreadyOpen`]). Two stores over one file keep two caches of the same
//! documents and two clocks, and silently overwrite each other's rows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The files open as a store in this process, by canonical path.
static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn open_set() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    // A panic elsewhere while holding the set leaves it usable: it is a plain set.
    OPEN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The path that names `path`'s file whatever the spelling (relative, `..`, symlinks):
/// the file's canonical path, or its folder's joined with its name when it does not exist
/// yet.
fn canonical(path: &Path) -> Result<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Ok(p);
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid("path", "names no file"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = parent
        .canonicalize()
        .map_err(|e| Error::invalid("path", format!("its folder cannot be opened: {e}")))?;
    Ok(dir.join(name))
}

/// The claim of one file, released when dropped (after the store's connection closed:
/// it is the store's last field).
#[derive(Debug)]
pub(super) struct OpenClaim(Option<PathBuf>);

impl OpenClaim {
    /// Claims `path`, or refuses when a store over it is open in this process.
    pub(super) fn file(path: &Path) -> Result<OpenClaim> {
        let key = canonical(path)?;
        let mut set = open_set();
        if !set.insert(key.clone()) {
            return Err(Error::AlreadyOpen(path.display().to_string()));
        }
        Ok(OpenClaim(Some(key)))
    }

    /// An in-memory store claims nothing.
    pub(super) fn none() -> OpenClaim {
        OpenClaim(None)
    }
}

impl Drop for OpenClaim {
    fn drop(&mut self) {
        if let Some(k) = self.0.take() {
            open_set().remove(&k);
        }
    }
}
