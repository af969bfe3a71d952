//! `xiuhua-bench`: measures the Xiuhua core on the reference grid workload.
//!
//! ```text
//! xiuhua-bench local --scale K --json FILE [--workload-dir DIR] [--load-runs N] [--no-floor]
//! ```
//!
//! Generates the workload at scale K (2,000·K households, 4,000·K records, 2,000·K tasks)
//! with the shared `gen.py`, maps it onto the domain model, builds every document, and
//! measures a fresh device's bulk load (in a child process, for its peak memory), the store's
//! size on disk, 1,000 user actions and the list queries. Figures go to FILE as JSON and to
//! stdout as a table beside the goals.
// The figures object of `local` is one json! literal with many keys.
#![recursion_limit = "256"]

mod console;
mod error;
mod mapping;
mod measure;
mod profile;
mod sync;
mod sys;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};
use xiuhua_core::Store;

use crate::error::{Context, Result, msg};

const USAGE: &str = "usage:
  xiuhua-bench local --scale K --json FILE [--workload-dir DIR] [--load-runs N] [--no-floor]

  --scale K           workload size: 2000K households, 4000K records, 2000K tasks (K >= 1)
  --json FILE         where to write the figures
  --workload-dir DIR  cache of generated workloads (default: <workspace>/target/workload)
  --load-runs N       how many times to measure the bulk load (median; default 3)
  --no-floor          skip the raw-SQLite floor measurement
  --keep DIR          keep the documents (DIR/docs.bin) and the loaded store (DIR/store.db)
                      for profiling, e.g. `perf record xiuhua-bench __load-child DIR/docs.bin X.db`

environment: XIUHUA_WORKLOAD_GEN=path/to/gen.py overrides where the generator is found";

/// Options of `local`.
#[derive(Debug, Clone)]
struct Local {
    scale: usize,
    json: PathBuf,
    workload_dir: Option<PathBuf>,
    load_runs: usize,
    floor: bool,
    keep: Option<PathBuf>,
}

fn parse_local(args: &[String]) -> Result<Local> {
    let mut scale = None;
    let mut json = None;
    let mut workload_dir = None;
    let mut load_runs = 3;
    let mut floor = true;
    let mut keep = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .context_with(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match a.as_str() {
            "--scale" => {
                let v = value("--scale")?;
                let k: usize = v
                    .parse()
                    .context_with(|| format!("--scale {v:?} is not a whole number"))?;
                if k == 0 {
                    return Err(msg("--scale must be at least 1"));
                }
                scale = Some(k);
            }
            "--json" => json = Some(PathBuf::from(value("--json")?)),
            "--workload-dir" => workload_dir = Some(PathBuf::from(value("--workload-dir")?)),
            "--load-runs" => {
                let v = value("--load-runs")?;
                load_runs = v
                    .parse()
                    .context_with(|| format!("--load-runs {v:?} is not a whole number"))?;
                if load_runs == 0 {
                    return Err(msg("--load-runs must be at least 1"));
                }
            }
            "--no-floor" => floor = false,
            "--keep" => keep = Some(PathBuf::from(value("--keep")?)),
            other => return Err(msg(format!("unknown option {other:?}\n\n{USAGE}"))),
        }
    }
    Ok(Local {
        scale: scale.context_with(|| format!("--scale is required\n\n{USAGE}"))?,
        json: json.context_with(|| format!("--json is required\n\n{USAGE}"))?,
        workload_dir,
        load_runs,
        floor,
        keep,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("local") => parse_local(&args[1..]).and_then(|o| run_local(&o)),
        Some("sync") => sync::parse(&args[1..]).and_then(|o| sync::run(&o)),
        Some("sync-chart") => sync::chart(&args[1..]),
        Some("console") => console::parse(&args[1..]).and_then(|o| console::run(&o)),
        Some(sync::DEVICE_CHILD) => sync::device_child(&args[1..]),
        Some(measure::LOAD_CHILD) if args.len() == 4 => {
            measure::load_child(&args[1], Path::new(&args[2]), Path::new(&args[3]))
        }
        Some("__profile") if args.len() == 2 => profile::run(Path::new(&args[1])),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}\n{}\n{}", sync::USAGE, console::USAGE);
            Ok(())
        }
        _ => Err(msg(format!("{USAGE}\n{}\n{}", sync::USAGE, console::USAGE))),
    };
    if let Err(e) = result {
        eprintln!("xiuhua-bench: {}", error::report(e.as_ref()));
        std::process::exit(1);
    }
}

/// Goals at scale 1 (DESIGN.md): (figure, limit, unit).
const GOALS: &[(&str, f64, &str)] = &[
    ("load_s", 0.7, "s"),
    ("disk_bytes", 6_000_000.0, "B"),
    ("write_p50_ms", 0.5, "ms"),
    ("building_list_ms", 5.0, "ms"),
    ("pinyin_search_ms", 5.0, "ms"),
    ("overdue_ms", 5.0, "ms"),
    ("home_list_ms", 5.0, "ms"),
    ("record_page_ms", 5.0, "ms"),
    ("text_search_ms", 5.0, "ms"),
];

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn progress(what: &str, t: Instant) {
    eprintln!("  {what}: {:.2} s", t.elapsed().as_secs_f64());
}

fn run_local(o: &Local) -> Result<()> {
    let k = o.scale;
    let (h, r, t) = (
        workload::BASE_H * k,
        workload::BASE_R * k,
        workload::BASE_T * k,
    );
    let cache = o
        .workload_dir
        .clone()
        .unwrap_or_else(workload::default_cache_dir);
    eprintln!("xiuhua-bench local: scale {k} ({h} households, {r} records, {t} tasks)");

    let t0 = Instant::now();
    let path = workload::generate(&cache, h, r, t)?;
    progress(&format!("workload {}", path.display()), t0);
    let t0 = Instant::now();
    let w = workload::read(&path)?;
    let m = mapping::map(&w)?;
    drop(w);
    progress("mapped onto the model", t0);
    let t0 = Instant::now();
    let built = mapping::build(&m, true)?;
    let doc_bytes: usize = built.docs.iter().map(|(_, b)| b.len()).sum();
    progress(
        &format!("built {} documents ({doc_bytes} bytes)", built.docs.len()),
        t0,
    );

    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let docs_path = dir.path().join("docs.bin");
    measure::write_docs(&docs_path, &built.docs)?;
    let t0 = Instant::now();
    let pages = measure::bundle_bytes(&m.grid, &built.docs, &built.rows)?;
    let bundle_len: usize = pages.iter().map(Vec::len).sum();
    let bundle_path = dir.path().join("bundle.bin");
    let named: Vec<(String, Vec<u8>)> = pages.into_iter().map(|p| (String::new(), p)).collect();
    measure::write_docs(&bundle_path, &named)?;
    drop(named);
    progress(
        &format!("built the bootstrap bundle ({bundle_len} bytes)"),
        t0,
    );

    // The device computing every row itself, for comparison (one run).
    let computed = {
        let p = dir.path().join("store-computed.db");
        let l = measure::load_in_child("docs", &docs_path, &p)?;
        for f in measure::store_files(&p) {
            let _ = std::fs::remove_file(f);
        }
        eprintln!("  load computing rows on the device: {:.3} s", l.load_s);
        l.load_s
    };

    // The load, in a child process each time.
    let mut loads = Vec::new();
    let mut store_path = PathBuf::new();
    for run in 0..o.load_runs {
        if run > 0 {
            for f in measure::store_files(&store_path) {
                let _ = std::fs::remove_file(f);
            }
        }
        store_path = dir.path().join(format!("store-{run}.db"));
        let l = measure::load_in_child("bundle", &bundle_path, &store_path)?;
        if l.imported != built.docs.len() {
            return Err(msg(format!(
                "the load imported {} of {} documents",
                l.imported,
                built.docs.len()
            )));
        }
        eprintln!(
            "  load run {}: {:.3} s, peak RSS {:.1} MB",
            run + 1,
            l.load_s,
            l.peak_rss_bytes as f64 / 1e6
        );
        loads.push(l);
    }
    if let Some(keep) = &o.keep {
        std::fs::create_dir_all(keep).context_with(|| format!("creating {}", keep.display()))?;
        std::fs::copy(&docs_path, keep.join("docs.bin"))
            .context_with(|| format!("copying the documents to {}", keep.display()))?;
        std::fs::copy(&store_path, keep.join("store.db"))
            .context_with(|| format!("copying the store to {}", keep.display()))?;
    }
    let _ = std::fs::remove_file(&docs_path);
    // The child closed the store: SQLite checkpointed and removed the WAL.
    let disk_bytes = measure::disk_bytes(&store_path)?;
    let load_runs: Vec<f64> = loads.iter().map(|l| l.load_s).collect();
    let load_s = median(&load_runs);
    let peak_rss = loads.iter().map(|l| l.peak_rss_bytes).max().unwrap_or(0);
    let rss_before = loads
        .iter()
        .map(|l| l.rss_before_load_bytes)
        .max()
        .unwrap_or(0);
    let open_s = median(&loads.iter().map(|l| l.open_s).collect::<Vec<_>>());

    // Queries and user actions on the loaded store.
    let mut store =
        Store::open(&store_path, measure::bench_actor()?).context("reopening the loaded store")?;
    let building = measure::building_list(&store, &m, 200)?;
    let pinyin = measure::pinyin_search(&store, &m, 200)?;
    let overdue = measure::overdue(&store, &m, 200)?;
    let home = measure::home_list(&store, &m, 200)?;
    let page = measure::record_page(&store, &m, 200)?;
    let (text, text_short) = measure::text_search(&store, &m, 200)?;
    let t0 = Instant::now();
    let writes = measure::writes(&mut store, &m, 1000)?;
    progress("1,000 user actions", t0);
    drop(store);
    let disk_after_writes = measure::disk_bytes(&store_path)?;

    let floor = if o.floor {
        let rows_s = measure::sqlite_floor(dir.path(), &built.rows, &built.docs, false)?;
        let docs_s = measure::sqlite_floor(dir.path(), &built.rows, &built.docs, true)?;
        Some((rows_s, docs_s))
    } else {
        None
    };

    let write_p50 = measure::percentile_ms(&writes.samples, 50.0);
    let write_p99 = measure::percentile_ms(&writes.samples, 99.0);
    let figures = json!({
        "scale": k,
        "docs": built.docs.len(),
        "households": m.households.len(),
        "residents": m.households.iter().map(|h| h.members.len()).sum::<usize>(),
        "records": m.records.len(),
        "tasks": m.tasks.len(),
        "doc_bytes": doc_bytes,
        "load_s": load_s,
        "load_s_runs": load_runs,
        "load_compute_rows_s": computed,
        "bundle_wire_bytes": bundle_len,
        "open_s": open_s,
        "peak_rss_bytes": peak_rss,
        "rss_before_load_bytes": rss_before,
        "disk_bytes": disk_bytes,
        "disk_after_writes_bytes": disk_after_writes,
        "write_p50_ms": write_p50,
        "write_p99_ms": write_p99,
        "write_mean_ms": writes.samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() * 1000.0
            / writes.samples.len().max(1) as f64,
        "writes": {
            "n": writes.samples.len(),
            "add_visit": writes.visits,
            "task_note": writes.notes,
            "record_status": writes.statuses,
            "member_phone": writes.phones,
        },
        "building_list_ms": building.median_ms,
        "building_list_p99_ms": building.p99_ms,
        "building_list_rows": building.mean_rows,
        "pinyin_search_ms": pinyin.median_ms,
        "pinyin_search_p99_ms": pinyin.p99_ms,
        "pinyin_search_rows": pinyin.mean_rows,
        "overdue_ms": overdue.median_ms,
        "overdue_p99_ms": overdue.p99_ms,
        "overdue_rows": overdue.mean_rows,
        "home_list_ms": home.median_ms,
        "home_list_p99_ms": home.p99_ms,
        "home_list_rows": home.mean_rows,
        "record_page_ms": page.median_ms,
        "record_page_p99_ms": page.p99_ms,
        "record_page_rows": page.mean_rows,
        "text_search_ms": text.median_ms,
        "text_search_p99_ms": text.p99_ms,
        "text_search_rows": text.mean_rows,
        "text_search_short_ms": text_short.median_ms,
        "text_search_short_p99_ms": text_short.p99_ms,
        "text_search_short_rows": text_short.mean_rows,
        "sqlite_insert_floor_s": floor.map(|f| f.0),
        "sqlite_insert_floor_with_docs_s": floor.map(|f| f.1),
        "goals_at_scale_1": GOALS.iter().map(|(n, v, _)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "machine": sys::machine(),
    });
    let text = serde_json::to_string_pretty(&figures)?;
    std::fs::write(&o.json, text + "\n")
        .context_with(|| format!("writing {}", o.json.display()))?;
    print_table(&figures);
    println!("figures written to {}", o.json.display());
    Ok(())
}

fn fmt_value(v: &Value, unit: &str) -> String {
    match (v.as_f64(), unit) {
        (None, _) => "—".into(),
        (Some(x), "B") => format!("{:.2} MB", x / 1e6),
        (Some(x), "s") => format!("{x:.3} s"),
        (Some(x), "ms") => format!("{x:.3} ms"),
        (Some(x), _) => format!("{x}"),
    }
}

fn print_table(f: &Value) {
    let scale = f.get("scale").and_then(Value::as_u64).unwrap_or(0);
    let machine = f.get("machine").cloned().unwrap_or(Value::Null);
    println!(
        "\nxiuhua-bench local, scale {scale}: {} documents on {} ({} cores)",
        f.get("docs").unwrap_or(&Value::Null),
        machine
            .get("cpu")
            .and_then(Value::as_str)
            .unwrap_or("unknown"),
        machine.get("cores").unwrap_or(&Value::Null),
    );
    let goal_note = if scale == 1 { "goal" } else { "goal (at 1×)" };
    println!("{:<34} {:>14}   {:<14}", "figure", "value", goal_note);
    let rows: &[(&str, &str, &str)] = &[
        ("load_s", "load from a bundle (wire → store)", "s"),
        (
            "load_compute_rows_s",
            "  load computing rows on device",
            "s",
        ),
        ("bundle_wire_bytes", "  bundle on the wire", "B"),
        ("peak_rss_bytes", "peak RSS of the load process", "B"),
        (
            "rss_before_load_bytes",
            "  RSS before the load (docs read)",
            "B",
        ),
        ("disk_bytes", "store on disk after load", "B"),
        ("disk_after_writes_bytes", "  after 1,000 actions", "B"),
        ("write_p50_ms", "user action p50", "ms"),
        ("write_p99_ms", "user action p99", "ms"),
        ("building_list_ms", "building list (median)", "ms"),
        ("pinyin_search_ms", "pinyin search (median)", "ms"),
        ("overdue_ms", "overdue tasks (median)", "ms"),
        ("home_list_ms", "home list (median)", "ms"),
        ("record_page_ms", "record page (median)", "ms"),
        ("text_search_ms", "text search, 3+ chars (median)", "ms"),
        ("text_search_short_ms", "  2 chars (median)", "ms"),
        ("sqlite_insert_floor_s", "floor: rows into SQLite", "s"),
        (
            "sqlite_insert_floor_with_docs_s",
            "floor: rows + doc bytes",
            "s",
        ),
        ("doc_bytes", "sum of document saves", "B"),
    ];
    for (key, label, unit) in rows {
        let v = f.get(*key).unwrap_or(&Value::Null);
        let goal = GOALS.iter().find(|(n, _, _)| n == key);
        let goal_text = match (goal, v.as_f64()) {
            (Some((_, limit, u)), Some(x)) => {
                let verdict = if scale != 1 {
                    ""
                } else if x <= *limit {
                    "  met"
                } else {
                    "  MISSED"
                };
                let limit = match *u {
                    "B" => format!("{:.0} MB", limit / 1e6),
                    u => format!("{limit} {u}"),
                };
                format!("≤ {limit}{verdict}")
            }
            _ => String::new(),
        };
        println!("{label:<34} {:>14}   {goal_text}", fmt_value(v, unit));
    }
}
