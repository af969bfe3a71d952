//! `xiuhua-bench console`: the station console's page and export times against a real
//! `xiuhua-server serve` with the console on (SQLite), after the reference workload at scale
//! K is pushed as a phone would ([`crate::sync`]'s upload device) and a console user has
//! logged in through the login form.
//!
//! Each figure is the median of `--runs` timed HTTP GETs (after one untimed warm-up), from
//! the request's start to the last byte of the answer, straight to the server's port (not
//! through the byte-counting relay):
//! - `board_ms`: `GET /console/board`, or `GET /console/` while the board does not exist
//!   (`board_path` says which);
//! - `ledger_page_ms`: the first page (100 rows) of a month's 民情台账, the heavier of the
//!   two (it reads the grid's tasks to join them); `ledger_tasks_page_ms` the 政务台账's;
//! - `ledger_export_s`: the same month's 民情台账 as `.xlsx` (every row, both sheets);
//!   `ledger_tasks_export_s` the 政务台账's;
//! - `stats_ms`: the statistics page of the workload's last 6 months.
//!
//! The month is the workload's busiest (most records reported, China time).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::{Context, Result, msg};
use crate::sync::{self, Backend, Station};
use crate::{sys, workload};

pub const USAGE: &str =
    "  xiuhua-bench console --scale K --json FILE [--runs N] [--workload-dir DIR]";

/// The console user's password (a throwaway station).
const PASSWORD: &str = "bench console password 1";

/// Goals at scale 16 (issue 11): (figure, limit, unit).
const GOALS: &[(&str, f64, &str)] = &[
    ("board_ms", 100.0, "ms"),
    ("ledger_page_ms", 100.0, "ms"),
    ("ledger_export_s", 2.0, "s"),
];

#[derive(Debug, Clone)]
pub struct Opts {
    scale: usize,
    json: PathBuf,
    runs: usize,
    workload_dir: Option<PathBuf>,
}

pub fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        scale: 0,
        json: PathBuf::new(),
        runs: 5,
        workload_dir: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .context_with(|| format!("{name} needs a value\n\n{USAGE}"))
        };
        match a.as_str() {
            "--scale" | "--runs" => {
                let v = value(a)?;
                let n: usize = v
                    .parse()
                    .context_with(|| format!("{a} {v:?} is not a whole number"))?;
                if n == 0 {
                    return Err(msg(format!("{a} must be at least 1")));
                }
                if a == "--scale" {
                    o.scale = n;
                } else {
                    o.runs = n;
                }
            }
            "--json" => o.json = PathBuf::from(value("--json")?),
            "--workload-dir" => o.workload_dir = Some(PathBuf::from(value("--workload-dir")?)),
            other => return Err(msg(format!("unknown option {other:?}\n\n{USAGE}"))),
        }
    }
    if o.scale == 0 {
        return Err(msg(format!("--scale is required\n\n{USAGE}")));
    }
    if o.json.as_os_str().is_empty() {
        return Err(msg(format!("--json is required\n\n{USAGE}")));
    }
    Ok(o)
}

/// `YYYY-MM` (China time) of a time in seconds.
fn month_of_s(secs: i64) -> String {
    let days = secs.saturating_add(8 * 3600).div_euclid(86_400);
    let (y, m, _) = xiuhua_core::hlc::civil_date(u64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}")
}

/// The month `n` months before `YYYY-MM`.
fn months_before(month: &str, n: i64) -> Result<String> {
    let (y, m) = month.split_once('-').context("a YYYY-MM month")?;
    let index = y.parse::<i64>()? * 12 + m.parse::<i64>()? - 1 - n;
    Ok(format!(
        "{:04}-{:02}",
        index.div_euclid(12),
        index.rem_euclid(12) + 1
    ))
}

/// A signed-in console session over plain HTTP/1.1 to the server.
struct Session {
    base: String,
    client: reqwest::blocking::Client,
    cookie: String,
}

/// The value of a `Set-Cookie` named `name` in an answer.
fn set_cookie(r: &reqwest::blocking::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let pair = v.split(';').next()?;
            let (k, val) = pair.split_once('=')?;
            (k == name).then(|| val.to_string())
        })
}

impl Session {
    /// Logs in through the login form (its CSRF token bound to the pre-login cookie).
    fn login(base: &str, user: &str, password: &str) -> Result<Session> {
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(300))
            .build()?;
        let form = client.get(format!("{base}/console/login")).send()?;
        let pre = set_cookie(&form, "xiuhua_login").context("no pre-login cookie")?;
        let html = form.text()?;
        let at = html
            .find("name=\"csrf\" value=\"")
            .context("no CSRF field on the login form")?
            + 19;
        let csrf: String = html[at..].chars().take_while(|c| *c != '"').collect();
        let r = client
            .post(format!("{base}/console/login"))
            .header(reqwest::header::COOKIE, format!("xiuhua_login={pre}"))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!(
                "csrf={csrf}&user={user}&password={}",
                password.replace(' ', "+")
            ))
            .send()?;
        if r.status().as_u16() != 303 {
            return Err(msg(format!("login refused: HTTP {}", r.status())));
        }
        let token = set_cookie(&r, "xiuhua_console").context("no session cookie")?;
        Ok(Session {
            base: base.to_string(),
            client,
            cookie: format!("xiuhua_console={token}"),
        })
    }

    /// One GET read to its end: (status, content type, bytes, seconds).
    fn get(&self, path: &str) -> Result<(u16, String, usize, f64)> {
        let t0 = Instant::now();
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .context_with(|| format!("GET {path}"))?;
        let status = r.status().as_u16();
        let kind = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let n = r.bytes()?.len();
        Ok((status, kind, n, t0.elapsed().as_secs_f64()))
    }

    /// The median time of `runs` GETs of `path` (after a warm-up), which must answer 200
    /// with a body of `kind`; with the body's size.
    fn time(&self, path: &str, kind: &str, runs: usize) -> Result<(f64, Vec<f64>, usize)> {
        let mut times = Vec::new();
        let mut size = 0;
        for run in 0..=runs {
            let (status, got, n, secs) = self.get(path)?;
            if status != 200 || !got.starts_with(kind) {
                return Err(msg(format!("GET {path}: HTTP {status}, {got}")));
            }
            size = n;
            if run > 0 {
                times.push(secs);
            }
        }
        Ok((crate::median(&times), times, size))
    }
}

pub fn run(o: &Opts) -> Result<()> {
    let k = o.scale;
    let cache = o
        .workload_dir
        .clone()
        .unwrap_or_else(workload::default_cache_dir);
    let (h, r, t) = (
        workload::BASE_H * k,
        workload::BASE_R * k,
        workload::BASE_T * k,
    );
    eprintln!("xiuhua-bench console: scale {k} ({h} households, {r} records, {t} tasks)");
    let wpath = workload::generate(&cache, h, r, t)?;
    let (grid, month, month_records, last_month) = {
        let w = workload::read(&wpath)?;
        let grid = w
            .households
            .first()
            .map(|h| h.grid_id.clone())
            .context("the workload has no households")?;
        let mut per_month: BTreeMap<String, usize> = BTreeMap::new();
        for rec in &w.records {
            *per_month.entry(month_of_s(rec.reported_at)).or_default() += 1;
        }
        let (month, n) = per_month
            .iter()
            .max_by_key(|(m, n)| (**n, std::cmp::Reverse((*m).clone())))
            .map(|(m, n)| (m.clone(), *n))
            .context("the workload has no records")?;
        let last = per_month.keys().last().cloned().unwrap_or(month.clone());
        (grid, month, n, last)
    };

    let station = Station::new(Backend::Sqlite)?;
    station.admin(&["district", "add", "bd", "基准片区"])?;
    station.admin(&["community", "add", "bc", "基准社区", "--district", "bd"])?;
    station.admin(&["grid", "add", &grid, "基准网格", "--community", "bc"])?;
    station.admin(&["user", "add", sync::USER, sync::USER_NAME])?;
    station.admin(&["grant", sync::USER, "--grid", &grid, "--role", sync::ROLE])?;
    let mut child = station
        .command()
        .args(["set-password", sync::USER])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running xiuhua-server set-password")?;
    child
        .stdin
        .take()
        .context("set-password's stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    if !child.wait()?.success() {
        return Err(msg("xiuhua-server set-password failed"));
    }
    let server = station.serve_with(&[("XIUHUA_CONSOLE", "1")])?;

    // The workload, pushed by a phone (the sync bench's upload device).
    let tmp = tempfile::tempdir().context("creating the device's folder")?;
    let store = tmp.path().join("a.db").display().to_string();
    let url = server.proxy.url.clone();
    sync::device(
        "enroll",
        &[url.clone(), store.clone(), station.enroll_code()?],
    )?;
    let t0 = Instant::now();
    let up = sync::device(
        "upload",
        &[url, store, sync::s(k), cache.display().to_string()],
    )?;
    eprintln!(
        "  upload: {:.1} s, {} changes stored",
        t0.elapsed().as_secs_f64(),
        up.get("stored").unwrap_or(&Value::Null)
    );

    let base = format!("http://{}", server.addr);
    let session = Session::login(&base, sync::USER, PASSWORD)?;
    let board_path = match session.get("/console/board")?.0 {
        404 => "/console/",
        _ => "/console/board",
    };
    let html = "text/html";
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let runs = o.runs;
    let (board, board_runs, _) = session.time(board_path, html, runs)?;
    eprintln!("  board ({board_path}): {:.1} ms", board * 1e3);
    let records = format!("/console/ledgers/records?from={month}-01");
    let tasks = format!("/console/ledgers/tasks?from={month}-01");
    let (page, page_runs, page_bytes) = session.time(&records, html, runs)?;
    eprintln!("  民情台账 page ({month}): {:.1} ms", page * 1e3);
    let (tpage, tpage_runs, _) = session.time(&tasks, html, runs)?;
    eprintln!("  政务台账 page ({month}): {:.1} ms", tpage * 1e3);
    let (export, export_runs, export_bytes) =
        session.time(&format!("{records}&format=xlsx"), xlsx, runs)?;
    eprintln!(
        "  民情台账 export ({month_records} records): {:.3} s, {export_bytes} bytes",
        export
    );
    let (texport, texport_runs, texport_bytes) =
        session.time(&format!("{tasks}&format=xlsx"), xlsx, runs)?;
    eprintln!("  政务台账 export: {texport:.3} s, {texport_bytes} bytes");
    let stats_path = format!(
        "/console/stats?from={}&to={last_month}",
        months_before(&last_month, 5)?
    );
    let (stats, stats_runs, _) = session.time(&stats_path, html, runs)?;
    eprintln!("  statistics (6 months): {:.1} ms", stats * 1e3);

    let ms = |v: &[f64]| v.iter().map(|s| s * 1e3).collect::<Vec<f64>>();
    let figures = json!({
        "scale": k,
        "backend": "sqlite",
        "docs": h + r + t,
        "month": month,
        "month_records": month_records,
        "runs": runs,
        "board_path": board_path,
        "board_ms": board * 1e3,
        "board_ms_runs": ms(&board_runs),
        "ledger_page_ms": page * 1e3,
        "ledger_page_ms_runs": ms(&page_runs),
        "ledger_page_bytes": page_bytes,
        "ledger_tasks_page_ms": tpage * 1e3,
        "ledger_tasks_page_ms_runs": ms(&tpage_runs),
        "ledger_export_s": export,
        "ledger_export_s_runs": export_runs,
        "ledger_export_bytes": export_bytes,
        "ledger_tasks_export_s": texport,
        "ledger_tasks_export_s_runs": texport_runs,
        "ledger_tasks_export_bytes": texport_bytes,
        "stats_ms": stats * 1e3,
        "stats_ms_runs": ms(&stats_runs),
        "stats_path": stats_path,
        "goals_at_scale_16": GOALS.iter().map(|(n, v, _)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "method": "median of the timed GETs after one warm-up, request start to last byte, straight to the server's port; the workload pushed by one phone beforehand; the console user logged in through the form",
        "machine": sys::machine(),
    });
    std::fs::write(&o.json, serde_json::to_string_pretty(&figures)? + "\n")
        .context_with(|| format!("writing {}", o.json.display()))?;
    println!("\nxiuhua-bench console, scale {k}: {month} has {month_records} records");
    for (key, limit, unit) in GOALS {
        let v = figures
            .get(*key)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN);
        let verdict = match (k, v <= *limit) {
            (16, true) => "  met",
            (16, false) => "  MISSED",
            _ => "",
        };
        println!("{key:<24} {v:>10.3} {unit:<3} goal at 16×: ≤ {limit} {unit}{verdict}");
    }
    println!("figures written to {}", o.json.display());
    drop(server);
    drop(station);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_in_china_time() {
        // 2024-05-31T16:00:00Z is 2024-06-01 00:00 in Beijing.
        assert_eq!(month_of_s(1_717_171_200 - 1), "2024-05");
        assert_eq!(month_of_s(1_717_171_200), "2024-06");
        assert_eq!(months_before("2024-03", 5).unwrap(), "2023-10");
        assert_eq!(months_before("2024-12", 0).unwrap(), "2024-12");
    }
}
