//! The measurements: the bulk load (in a child process, for its peak memory), disk size,
//! user actions, list queries and the raw-SQLite floor.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xiuhua_core::pinyin::name_keys;
use xiuhua_core::store::Rows;
use xiuhua_core::{Actor, NewVisit, RecordStatus, Role, Store, TaskAction};

use crate::error::{Context, Result, msg};
use crate::mapping::Mapped;
use crate::sys;

/// The hidden subcommand that runs the load in a child process.
pub const LOAD_CHILD: &str = "__load-child";

/// The user acting on the benchmark's device.
pub fn bench_actor() -> Result<Actor> {
    Ok(Actor::new(
        "u-bench",
        "基准测试员",
        Role::GridMember,
        "bench-phone",
    )?)
}

// ----- documents in a file, for the child -----

fn write_u32(w: &mut impl Write, n: usize) -> Result<()> {
    let n = u32::try_from(n).context("a document is larger than 4 GiB")?;
    w.write_all(&n.to_le_bytes())?;
    Ok(())
}

/// Writes documents as (u32 LE id length, id, u32 LE bytes length, bytes)*.
pub fn write_docs(path: &Path, docs: &[(String, Vec<u8>)]) -> Result<()> {
    let file =
        std::fs::File::create(path).context_with(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    for (id, bytes) in docs {
        write_u32(&mut w, id.len())?;
        w.write_all(id.as_bytes())?;
        write_u32(&mut w, bytes.len())?;
        w.write_all(bytes)?;
    }
    w.flush()
        .context_with(|| format!("writing {}", path.display()))
}

fn read_u32(r: &mut impl Read) -> Result<Option<usize>> {
    let mut b = [0u8; 4];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(u32::from_le_bytes(b) as usize)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads what [`write_docs`] wrote.
pub fn read_docs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let ctx = || format!("reading documents from {}", path.display());
    let file = std::fs::File::open(path).context_with(ctx)?;
    let mut r = BufReader::new(file);
    let mut docs = Vec::new();
    while let Some(n) = read_u32(&mut r).context_with(ctx)? {
        let mut id = vec![0u8; n];
        r.read_exact(&mut id).context_with(ctx)?;
        let id = String::from_utf8(id).context_with(ctx)?;
        let n = read_u32(&mut r)
            .context_with(ctx)?
            .context_with(|| format!("{}: truncated after id {id}", path.display()))?;
        let mut bytes = vec![0u8; n];
        r.read_exact(&mut bytes).context_with(ctx)?;
        docs.push((id, bytes));
    }
    Ok(docs)
}

// ----- the load -----

/// What one load in a child process measured.
#[derive(Debug, Clone)]
pub struct Load {
    pub load_s: f64,
    pub open_s: f64,
    pub imported: usize,
    pub peak_rss_bytes: u64,
    pub rss_before_load_bytes: u64,
}

/// The child's side: read the documents, open a fresh store, import them, report on stdout
/// as one JSON line.
///
/// `mode` is `bundle` (the file holds a bootstrap bundle as it arrives on the wire: zstd
/// MessagePack with each document's bytes and projection rows; timed from the wire bytes to
/// the committed store) or `docs` (the file holds whole documents whose rows the device
/// computes itself with `import_documents`).
pub fn load_child(mode: &str, input: &Path, store_path: &Path) -> Result<()> {
    enum Input {
        Bundle(Vec<Vec<u8>>),
        Docs(Vec<(String, Vec<u8>)>),
    }
    let input = match mode {
        "bundle" => Input::Bundle(read_docs(input)?.into_iter().map(|(_, b)| b).collect()),
        "docs" => Input::Docs(read_docs(input)?),
        other => return Err(msg(format!("unknown load mode {other}"))),
    };
    let rss_before = sys::status_bytes("VmRSS").context("VmRSS is not in /proc/self/status")?;
    let t0 = Instant::now();
    let mut store = Store::open(store_path, bench_actor()?)
        .context_with(|| format!("opening a fresh store at {}", store_path.display()))?;
    let open_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let imported = match &input {
        Input::Bundle(pages) => {
            let mut n = 0;
            for wire in pages {
                let bundle: xiuhua_core::sync::proto::Bundle =
                    xiuhua_core::sync::proto::decode(wire).context("decoding the bundle")?;
                n += store
                    .import_bundle(&bundle)
                    .context("importing the bundle")?;
            }
            n
        }
        Input::Docs(docs) => store
            .import_documents(docs)
            .context("importing the documents")?,
    };
    let load_s = t1.elapsed().as_secs_f64();
    let peak = sys::status_bytes("VmHWM").context("VmHWM is not in /proc/self/status")?;
    drop(store);
    let line = json!({
        "load_s": load_s,
        "open_s": open_s,
        "imported": imported,
        "peak_rss_bytes": peak,
        "rss_before_load_bytes": rss_before,
    });
    println!("{line}");
    Ok(())
}

/// The parent's side: runs this binary as a child that loads `docs_path` into a fresh
/// store at `store_path`.
pub fn load_in_child(mode: &str, docs_path: &Path, store_path: &Path) -> Result<Load> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    let out = std::process::Command::new(&exe)
        .arg(LOAD_CHILD)
        .arg(mode)
        .arg(docs_path)
        .arg(store_path)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context_with(|| format!("running {} {LOAD_CHILD}", exe.display()))?;
    if !out.status.success() {
        return Err(msg(format!("the load child failed: {}", out.status)));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).context("reading the load child's report")?;
    let f = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .context_with(|| format!("child report lacks {k}"))
    };
    let u = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .context_with(|| format!("child report lacks {k}"))
    };
    Ok(Load {
        load_s: f("load_s")?,
        open_s: f("open_s")?,
        imported: usize::try_from(u("imported")?)?,
        peak_rss_bytes: u("peak_rss_bytes")?,
        rss_before_load_bytes: u("rss_before_load_bytes")?,
    })
}

/// The store's files: the database and its WAL and shared-memory files, when present.
pub fn store_files(store_path: &Path) -> Vec<PathBuf> {
    let mut files = vec![store_path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = store_path.as_os_str().to_owned();
        p.push(suffix);
        files.push(PathBuf::from(p));
    }
    files
}

/// Total size of the store's files that exist.
pub fn disk_bytes(store_path: &Path) -> Result<u64> {
    let mut total = 0;
    for f in store_files(store_path) {
        match std::fs::metadata(&f) {
            Ok(m) => total += m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context_with(|| format!("size of {}", f.display())),
        }
    }
    Ok(total)
}

// ----- statistics -----

/// The nearest-rank percentile `p` (0–100) of `samples`, in ms.
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<Duration> = samples.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    let i = rank.clamp(1, v.len()) - 1;
    v[i].as_secs_f64() * 1000.0
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let t = Instant::now();
    let r = f()?;
    Ok((t.elapsed(), r))
}

// ----- user actions -----

/// Index `i` spread over `0..n` by a large prime stride.
fn spread(i: usize, n: usize, salt: usize) -> usize {
    (i.wrapping_mul(7919).wrapping_add(salt)) % n.max(1)
}

/// How many of each action kind [`writes`] did.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    pub samples: Vec<Duration>,
    pub visits: usize,
    pub notes: usize,
    pub statuses: usize,
    pub phones: usize,
}

/// `n` user actions, a fixed mix (visit, task note, record status, member phone), each timed.
pub fn writes(store: &mut Store, m: &Mapped, n: usize) -> Result<Writes> {
    if m.households.is_empty() || m.records.is_empty() || m.tasks.is_empty() {
        return Err(msg("the write mix needs households, records and tasks"));
    }
    let mut statuses: Vec<RecordStatus> = m.records.iter().map(|r| r.status).collect();
    let mut w = Writes::default();
    for i in 0..n {
        let j = i / 4;
        let (d, ()) = match i % 4 {
            0 => {
                let h = &m.households[spread(j, m.households.len(), 1)];
                w.visits += 1;
                timed(|| {
                    store
                        .add_visit(
                            &h.id,
                            NewVisit {
                                purpose: "入户走访".into(),
                                note: format!("第{j}次走访：了解近况，居民无新诉求"),
                                follow_up: None,
                            },
                        )
                        .context_with(|| format!("visit to {}", h.id))?;
                    Ok(())
                })?
            }
            1 => {
                let t = &m.tasks[spread(j, m.tasks.len(), 2)];
                w.notes += 1;
                timed(|| {
                    store
                        .task_action(
                            &t.id,
                            TaskAction::Note {
                                text: format!("进展{j}：已电话联系居民，约定上门时间"),
                            },
                        )
                        .context_with(|| format!("note on {}", t.id))?;
                    Ok(())
                })?
            }
            2 => {
                let k = spread(j, m.records.len(), 3);
                let r = &m.records[k];
                let all = RecordStatus::ALL;
                let pos = all.iter().position(|s| *s == statuses[k]).unwrap_or(0);
                let next = all[(pos + 1) % all.len()];
                statuses[k] = next;
                w.statuses += 1;
                timed(|| {
                    store
                        .set_record_status(&r.id, next)
                        .context_with(|| format!("status of {}", r.id))
                })?
            }
            _ => {
                let h = &m.households[spread(j, m.households.len(), 4)];
                let member = h
                    .members
                    .get(j % h.members.len().max(1))
                    .context_with(|| format!("household {} has no members", h.id))?;
                let phone = format!("13{:09}", spread(j, 1_000_000_000, 12345));
                w.phones += 1;
                timed(|| {
                    store
                        .set_member_phone(&h.id, &member.id, Some(&phone))
                        .context_with(|| format!("phone of {} in {}", member.id, h.id))
                })?
            }
        };
        w.samples.push(d);
    }
    Ok(w)
}

// ----- queries -----

/// A query measured `n` times: median and how many rows it returned on average.
#[derive(Debug, Clone)]
pub struct QueryStat {
    pub median_ms: f64,
    pub p99_ms: f64,
    pub mean_rows: f64,
}

fn query_stat(samples: &[Duration], rows: usize) -> QueryStat {
    QueryStat {
        median_ms: percentile_ms(samples, 50.0),
        p99_ms: percentile_ms(samples, 99.0),
        mean_rows: rows as f64 / samples.len().max(1) as f64,
    }
}

/// The distinct buildings of the grid, in a stable order.
pub fn buildings(m: &Mapped) -> Vec<String> {
    let mut b: Vec<String> = m
        .households
        .iter()
        .map(|h| h.address.building.clone())
        .collect();
    b.sort();
    b.dedup();
    b
}

/// `households_in(grid, building, None)` over varying buildings.
pub fn building_list(store: &Store, m: &Mapped, n: usize) -> Result<QueryStat> {
    let b = buildings(m);
    let mut samples = Vec::with_capacity(n);
    let mut rows = 0;
    for i in 0..n {
        let building = &b[spread(i, b.len(), 0)];
        let (d, r) = timed(|| Ok(store.households_in(&m.grid, building, None)?))?;
        rows += r.len();
        samples.push(d);
    }
    Ok(query_stat(&samples, rows))
}

/// Pinyin queries made from residents' names: full pinyin of the whole name, initials,
/// and the surname's full pinyin alone (`zhang`), in turn.
pub fn pinyin_queries(m: &Mapped, n: usize) -> Vec<String> {
    let members: Vec<&str> = m
        .households
        .iter()
        .flat_map(|h| h.members.iter().map(|x| x.name.as_str()))
        .collect();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while out.len() < n && !members.is_empty() && i < n * 10 {
        let name = members[spread(i, members.len(), 5)];
        let keys = name_keys(name);
        let q = match i % 3 {
            0 => keys.full.first().cloned(),
            1 => keys.initials.first().cloned(),
            _ => name
                .chars()
                .next()
                .and_then(|c| name_keys(&c.to_string()).full.first().cloned()),
        };
        if let Some(q) = q {
            out.push(q);
        }
        i += 1;
    }
    out
}

/// `search_residents` with pinyin queries, limit 50.
pub fn pinyin_search(store: &Store, m: &Mapped, n: usize) -> Result<QueryStat> {
    let queries = pinyin_queries(m, n);
    if queries.is_empty() {
        return Err(msg(
            "no pinyin queries could be made from the residents' names",
        ));
    }
    let mut samples = Vec::with_capacity(queries.len());
    let mut rows = 0;
    for q in &queries {
        let (d, r) = timed(|| Ok(store.search_residents(q, 50)?))?;
        rows += r.len();
        samples.push(d);
    }
    Ok(query_stat(&samples, rows))
}

/// `overdue_tasks(grid)`.
pub fn overdue(store: &Store, m: &Mapped, n: usize) -> Result<QueryStat> {
    let mut samples = Vec::with_capacity(n);
    let mut rows = 0;
    for _ in 0..n {
        let (d, r) = timed(|| Ok(store.overdue_tasks(&m.grid)?))?;
        rows += r.len();
        samples.push(d);
    }
    Ok(query_stat(&samples, rows))
}

/// The users tasks are assigned to, most tasks first (at most 20).
fn busiest_assignees(m: &Mapped) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for t in &m.tasks {
        if let Some(a) = xiuhua_core::workflow::fold(t.events.values()).assignee {
            *counts.entry(a).or_default() += 1;
        }
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().take(20).map(|(a, _)| a).collect()
}

/// `home_list(grid, user, now, 50)` for the busiest assignees in turn.
pub fn home_list(store: &Store, m: &Mapped, n: usize) -> Result<QueryStat> {
    let users = busiest_assignees(m);
    if users.is_empty() {
        return Err(msg("no task of the workload has an assignee"));
    }
    let now = store.now_ms();
    let mut samples = Vec::with_capacity(n);
    let mut rows = 0;
    for i in 0..n {
        let user = &users[i % users.len()];
        let (d, r) = timed(|| Ok(store.home_list(&m.grid, user, now, 50)?))?;
        rows += r.len();
        samples.push(d);
    }
    Ok(query_stat(&samples, rows))
}

/// A 50-record page: the first page and the page after it, unfiltered and filtered by
/// building, by category and by status, in turn.
pub fn record_page(store: &Store, m: &Mapped, n: usize) -> Result<QueryStat> {
    use xiuhua_core::store::RecordFilter;
    let b = buildings(m);
    let mut samples = Vec::with_capacity(n);
    let mut rows = 0;
    for i in 0..n {
        let filter = match i % 4 {
            0 => RecordFilter::default(),
            1 => RecordFilter {
                building: Some(b[spread(i, b.len(), 3)].clone()),
                ..Default::default()
            },
            2 => RecordFilter {
                category: m
                    .records
                    .get(spread(i, m.records.len(), 1))
                    .map(|r| r.category),
                ..Default::default()
            },
            _ => RecordFilter {
                status: Some(RecordStatus::Pending),
                ..Default::default()
            },
        };
        let first = store.record_page(&m.grid, &filter, None, 50)?;
        let (d, r) = if i % 2 == 0 {
            timed(|| Ok(store.record_page(&m.grid, &filter, None, 50)?))?
        } else {
            timed(|| Ok(store.record_page(&m.grid, &filter, first.next.as_deref(), 50)?))?
        };
        rows += r.items.len();
        samples.push(d);
    }
    Ok(query_stat(&samples, rows))
}

/// Words of `chars` characters taken from the records' descriptions (skipping punctuation).
fn record_words(m: &Mapped, n: usize, chars: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while out.len() < n && !m.records.is_empty() && i < n * 10 {
        let r = &m.records[spread(i, m.records.len(), 11)];
        let text: Vec<char> = r.description.as_str().chars().collect();
        if text.len() >= chars {
            let at = spread(i, text.len() - chars + 1, 2);
            let word: String = text[at..at + chars].iter().collect();
            if word.chars().all(|c| c.is_alphanumeric()) {
                out.push(word);
            }
        }
        i += 1;
    }
    out
}

/// `search(q, 50)` with 3–4 character words of records' descriptions (the FTS5 trigram
/// path), and separately with 2-character words (the scan fallback).
pub fn text_search(store: &Store, m: &Mapped, n: usize) -> Result<(QueryStat, QueryStat)> {
    let mut long = record_words(m, n / 2, 3);
    long.extend(record_words(m, n - n / 2, 4));
    let short = record_words(m, n / 4, 2);
    if long.is_empty() || short.is_empty() {
        return Err(msg("no search words could be taken from the records"));
    }
    let run = |qs: &[String]| -> Result<QueryStat> {
        let mut samples = Vec::with_capacity(qs.len());
        let mut rows = 0;
        for q in qs {
            let (d, r) = timed(|| Ok(store.search(q, 50)?))?;
            rows += r.len();
            samples.push(d);
        }
        Ok(query_stat(&samples, rows))
    };
    Ok((run(&long)?, run(&short)?))
}

// ----- the floor -----

/// Time to insert the same projection rows (and, with `with_docs`, the documents' bytes
/// into `docs`) into a fresh store's tables with plain SQL in one transaction, without
/// touching Automerge.
pub fn sqlite_floor(
    dir: &Path,
    rows: &[Rows],
    docs: &[(String, Vec<u8>)],
    with_docs: bool,
) -> Result<f64> {
    use rusqlite::params;
    let path = dir.join(if with_docs {
        "floor-docs.db"
    } else {
        "floor.db"
    });
    // A fresh store gives the real schema (tables, indexes, WAL); then plain SQL.
    drop(Store::open(&path, bench_actor()?).context("creating the floor store")?);
    let mut conn = rusqlite::Connection::open(&path).context("opening the floor store")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let t = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut hh = tx.prepare(
            "INSERT INTO households (id, grid, building, unit, room, head_name, member_count, tags, visit_count, last_visit_at, conflicts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut res = tx.prepare(
            "INSERT INTO residents (household, member, grid, building, name, pinyin, initials, phone, phone_rev, id_masked, gender, birth_year, relation, tags)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        let mut rec = tx.prepare(
            "INSERT INTO records (id, grid, category, status, reporter, household, building, place, reported_at, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut task = tx.prepare(
            "INSERT INTO tasks (id, grid, title, category, level, status, tier, assignee, deadline, created_at, household, source_record, rating, rejected)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        let mut doc = tx.prepare(
            "INSERT INTO docs (id, kind, grid, snapshot, chunks) VALUES (?1, ?2, ?3, ?4, 0)",
        )?;
        for (i, r) in rows.iter().enumerate() {
            let (kind, grid) = match r {
                Rows::Household {
                    household: h,
                    residents,
                } => {
                    hh.execute(params![
                        h.id,
                        h.grid,
                        h.building,
                        h.unit,
                        h.room,
                        h.head_name,
                        h.member_count,
                        h.tags,
                        h.visit_count,
                        h.last_visit_at,
                        h.conflicts
                    ])?;
                    for x in residents {
                        let rev: Option<String> =
                            x.phone.as_ref().map(|p| p.chars().rev().collect());
                        res.execute(params![
                            x.household,
                            x.member,
                            x.grid,
                            x.building,
                            x.name,
                            x.pinyin,
                            x.initials,
                            x.phone,
                            rev,
                            x.id_masked,
                            x.gender,
                            x.birth_year,
                            x.relation,
                            x.tags
                        ])?;
                    }
                    ("household", &h.grid)
                }
                Rows::Record(r) => {
                    rec.execute(params![
                        r.id,
                        r.grid,
                        r.category,
                        r.status,
                        r.reporter,
                        r.household,
                        r.building,
                        r.place,
                        r.reported_at,
                        r.summary
                    ])?;
                    ("record", &r.grid)
                }
                Rows::Task(t) => {
                    task.execute(params![
                        t.id,
                        t.grid,
                        t.title,
                        t.category,
                        t.level,
                        t.status,
                        t.tier,
                        t.assignee,
                        t.deadline,
                        t.created_at,
                        t.household,
                        t.source_record,
                        t.rating,
                        t.rejected
                    ])?;
                    ("task", &t.grid)
                }
            };
            if with_docs {
                let (id, bytes) = docs.get(i).context("fewer documents than row sets")?;
                doc.execute(params![id, kind, grid, bytes])?;
            }
        }
    }
    tx.commit()?;
    Ok(t.elapsed().as_secs_f64())
}

/// The bootstrap bundle a server would send for these documents, encoded for the wire:
/// each document's uncompressed save, heads and projection rows.
pub fn bundle_bytes(
    grid: &str,
    docs: &[(String, Vec<u8>)],
    rows: &[xiuhua_core::store::Rows],
) -> Result<Vec<Vec<u8>>> {
    use xiuhua_core::store::Rows;
    use xiuhua_core::sync::proto::{Bundle, BundleDoc};
    let mut out = Vec::with_capacity(docs.len());
    for ((id, bytes), rows) in docs.iter().zip(rows) {
        let mut doc = xiuhua_core::doc::load_doc(bytes).context_with(|| format!("loading {id}"))?;
        let kind = match rows {
            Rows::Household { .. } => "household",
            Rows::Record(_) => "record",
            Rows::Task(_) => "task",
        };
        out.push(BundleDoc {
            id: id.clone(),
            kind: kind.to_string(),
            heads: doc
                .get_heads()
                .iter()
                .map(|h| serde_bytes::ByteBuf::from(h.0.to_vec()))
                .collect(),
            bytes: serde_bytes::ByteBuf::from(doc.save_nocompress()),
            rows: rows.clone(),
        });
    }
    let mut pages = Vec::new();
    while !out.is_empty() {
        let rest = out.split_off(out.len().min(BUNDLE_PAGE_DOCS));
        let bundle = Bundle {
            server_time_ms: 0,
            grid: grid.to_string(),
            cursor: docs.len() as u64,
            projection_version: xiuhua_core::store::PROJECTION_VERSION,
            more: !rest.is_empty(),
            docs: std::mem::replace(&mut out, rest),
            total_docs: pages.is_empty().then_some(docs.len() as u64),
        };
        pages.push(xiuhua_core::sync::proto::encode(&bundle));
    }
    Ok(pages)
}

/// Documents per bootstrap bundle page: the server's page size. A bundle body is capped at
/// `proto::MAX_BODY_BYTES` once decompressed, so a large grid goes as several bundles.
pub const BUNDLE_PAGE_DOCS: usize = xiuhua_core::sync::proto::BOOTSTRAP_MAX_PAGE as usize;
