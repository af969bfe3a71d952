//! The reference workload: finding the shared generator, running it (with a cache) and
//! reading its JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::error::{Context, Result, msg};

/// Households, records and tasks at scale 1.
pub const BASE_H: usize = 2000;
pub const BASE_R: usize = 4000;
pub const BASE_T: usize = 2000;

/// One generated grid, as `gen.py` writes it. Fields the model has no place for are
/// read (so a change of the generator's format is noticed) but not used.
#[derive(Debug, Clone, Deserialize)]
pub struct Workload {
    pub households: Vec<JsonHousehold>,
    pub records: Vec<JsonRecord>,
    pub tasks: Vec<JsonTask>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonHousehold {
    pub id: String,
    pub grid_id: String,
    pub building: String,
    pub unit: String,
    pub room: String,
    pub members: Vec<JsonMember>,
    pub tags: Vec<String>,
    pub note: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonMember {
    pub name: String,
    pub gender: String,
    pub birth_year: i64,
    pub phone: String,
    pub relation: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonRecord {
    pub id: String,
    pub household_id: String,
    pub category: String,
    pub reporter: String,
    pub reported_at: i64,
    pub status: String,
    pub location: String,
    pub description: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonTask {
    pub id: String,
    pub record_id: Option<String>,
    pub household_id: Option<String>,
    pub title: String,
    pub level: String,
    pub assignee: String,
    pub created_at: i64,
    pub due_at: i64,
    pub events: Vec<JsonEvent>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JsonEvent {
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub note: String,
}

/// The workspace root as it was when this binary was compiled.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Finds `gen.py`: `$XIUHUA_WORKLOAD_GEN`; else the copy kept in this crate
/// (`bench/workload/gen.py`); else `../shared/workload/gen.py` beside the workspace; else
/// `bench/workload/gen.py` or `shared/workload/gen.py` under the current directory or one of
/// its ancestors.
pub fn find_generator() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("XIUHUA_WORKLOAD_GEN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(msg(format!(
            "XIUHUA_WORKLOAD_GEN is set to {}, which is not a file",
            p.display()
        )));
    }
    let root = workspace_root();
    let mut tried = vec![
        Path::new(env!("CARGO_MANIFEST_DIR")).join("workload/gen.py"),
        root.join("../shared/workload/gen.py"),
    ];
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            tried.push(dir.join("bench/workload/gen.py"));
            tried.push(dir.join("shared/workload/gen.py"));
        }
    }
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(msg(format!(
        "the workload generator gen.py was not found; set XIUHUA_WORKLOAD_GEN to its path. Tried:\n  {}",
        list.join("\n  ")
    )))
}

/// The default cache directory: `target/workload` of the workspace (or of the current
/// directory when the workspace this was built in is gone).
pub fn default_cache_dir() -> PathBuf {
    let root = workspace_root();
    if root.join("Cargo.toml").is_file() {
        root.join("target/workload")
    } else {
        PathBuf::from("target/workload")
    }
}

/// 64-bit FNV-1a, to name cached files after the generator that made them.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Returns the path of the workload JSON for (h, r, t), generating it into `cache_dir`
/// when no cached copy made by the same generator exists.
pub fn generate(cache_dir: &Path, h: usize, r: usize, t: usize) -> Result<PathBuf> {
    let generator = find_generator()?;
    let source = std::fs::read(&generator)
        .context_with(|| format!("reading the generator {}", generator.display()))?;
    let name = format!("workload-H{h}-R{r}-T{t}-{:016x}.json", fnv1a(&source));
    let out = cache_dir.join(&name);
    if out.is_file() {
        return Ok(out);
    }
    std::fs::create_dir_all(cache_dir)
        .context_with(|| format!("creating the cache directory {}", cache_dir.display()))?;
    let partial = cache_dir.join(format!("{name}.partial-{}", std::process::id()));
    let status = Command::new("python3")
        .arg(&generator)
        .arg(&partial)
        .arg(h.to_string())
        .arg(r.to_string())
        .arg(t.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context_with(|| format!("running python3 {}", generator.display()))?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        return Err(msg(format!(
            "python3 {} {} {h} {r} {t} failed: {status}",
            generator.display(),
            partial.display()
        )));
    }
    std::fs::rename(&partial, &out)
        .context_with(|| format!("moving the workload into place at {}", out.display()))?;
    Ok(out)
}

/// Reads a generated workload.
pub fn read(path: &Path) -> Result<Workload> {
    let bytes = std::fs::read(path).context_with(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .context_with(|| format!("{} is not a workload of the expected shape", path.display()))
}
