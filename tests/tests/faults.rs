//! The fault suite: the real server, a fault-injecting proxy ([`xiuhua_e2e::proxy`]) and
//! four phones (three from the start, one that joins half-way) making random edits and
//! syncing at random through the proxy, which drops requests, loses and truncates replies,
//! duplicates requests, cuts connections and delays. Then clean syncs until nothing moves,
//! and the checks:
//!
//! - every phone shows the same projection (identical rows);
//! - every edit (each carries a unique marker) is on every phone that may see its grid;
//! - no sync reported a success that was not one: after an `Ok` the outbox is empty, the
//!   status says success with no error and no unfinished sync, and the phone holds every
//!   edit the server had acknowledged before the sync began; after an `Err` the status
//!   records the error and the previous success stays.
//!
//! Modes, one test each: fresh tokens; tokens so short that every sync refreshes; grants
//! added and removed during the run; a phone run as a child process and killed with
//! SIGKILL mid-sync. `XIUHUA_FAULT_SYNCS` sets the number of random syncs (default 200),
//! `XIUHUA_FAULT_SEED` the seed (default: fixed per mode).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xiuhua_core::model::NewVisit;
use xiuhua_core::{Error, Store};
use xiuhua_e2e::proxy::{Fault, FaultProxy, Rng};
use xiuhua_e2e::*;

/// Share of requests that get a fault during the random phase.
const FAULT_RATE: u64 = 25;

#[derive(Debug, Clone, Copy, Default)]
struct Mode {
    short_tokens: bool,
    grants: bool,
    kill: bool,
}

struct Phone {
    dev: Device,
    label: &'static str,
    /// Grids it edits.
    edits: Vec<&'static str>,
    /// Grids it must hold at the end.
    holds: Vec<&'static str>,
}

/// Everything one phone can see of a grid: the markers of its households (note), visits
/// (purpose), records (description) and tasks (title).
fn markers(store: &mut Store, grid: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut households = Vec::new();
    for (b, _) in store.buildings(grid).unwrap() {
        households.extend(store.households_in(grid, &b, None).unwrap());
    }
    for h in households {
        let d = store.household(&h.id).unwrap();
        out.insert(d.note.as_str().to_string());
        out.extend(d.visits.iter().map(|v| v.purpose.clone()));
    }
    for r in store.records(grid, None, None, 100_000).unwrap() {
        out.insert(
            store
                .record(&r.id)
                .unwrap()
                .description
                .as_str()
                .to_string(),
        );
    }
    for t in store.tasks(grid, None, None, 100_000).unwrap() {
        out.insert(store.task(&t.id).unwrap().task.title);
    }
    out.remove("");
    out
}

fn households_of(store: &Store, grid: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (b, _) in store.buildings(grid).unwrap() {
        ids.extend(
            store
                .households_in(grid, &b, None)
                .unwrap()
                .into_iter()
                .map(|h| h.id),
        );
    }
    ids
}

struct Run {
    mode: Mode,
    server: Server,
    proxy: FaultProxy,
    phones: Vec<Phone>,
    rng: Rng,
    next_marker: u64,
    /// marker → grid, for every edit made.
    made: BTreeMap<String, &'static str>,
    /// marker → grid, for every edit the server acknowledged (its phone's sync succeeded
    /// after the edit).
    acked: BTreeMap<String, &'static str>,
    /// Markers made on each phone and not yet acknowledged.
    unacked: Vec<Vec<String>>,
    ok: u64,
    failed: u64,
    kills_mid_sync: u64,
    kills: u64,
    errors: BTreeMap<String, u64>,
}

impl Run {
    fn new(mode: Mode, seed: u64) -> Run {
        let env: Vec<(&str, &str)> = if mode.short_tokens {
            // Below the engine's one-minute margin: every sync starts with a refresh.
            vec![("XIUHUA_ACCESS_TTL_SECS", "30")]
        } else {
            vec![]
        };
        let server = Server::with_directory_and(&env);
        let proxy = FaultProxy::start(&server.url, seed, FAULT_RATE);
        let mut run = Run {
            mode,
            server,
            proxy,
            phones: Vec::new(),
            rng: Rng::new(seed ^ 0x5eed),
            next_marker: 0,
            made: BTreeMap::new(),
            acked: BTreeMap::new(),
            unacked: Vec::new(),
            ok: 0,
            failed: 0,
            kills_mid_sync: 0,
            kills: 0,
            errors: BTreeMap::new(),
        };
        let g2_edits: Vec<&'static str> = if mode.grants {
            vec!["g1", "g2"]
        } else {
            vec!["g1"]
        };
        let wang_holds = if mode.grants {
            vec!["g1", "g2"]
        } else {
            vec!["g1"]
        };
        run.join("u-wang", "wang", vec!["g1"], wang_holds);
        run.join("u-zhao", "zhao", g2_edits.clone(), vec!["g1", "g2"]);
        run.join("u-chen", "chen", g2_edits, vec!["g1", "g2"]);
        run
    }

    fn join(
        &mut self,
        user: &str,
        label: &'static str,
        edits: Vec<&'static str>,
        holds: Vec<&'static str>,
    ) {
        // Enrollment goes straight to the server: the suite is about syncing.
        let mut dev = self.server.enroll(user);
        dev.url = self.proxy.url.clone();
        self.phones.push(Phone {
            dev,
            label,
            edits,
            holds,
        });
        self.unacked.push(Vec::new());
    }

    fn marker(&mut self, grid: &'static str, phone: usize) -> String {
        self.next_marker += 1;
        let m = format!("m{:05}", self.next_marker);
        self.made.insert(m.clone(), grid);
        self.unacked[phone].push(m.clone());
        m
    }

    /// One random edit on phone `i`.
    fn edit(&mut self, i: usize) {
        let grids = self.phones[i].edits.clone();
        let grid = grids[self.rng.below(grids.len() as u64) as usize];
        let buildings: &[&str] = if grid == "g1" {
            &["1号楼", "2号楼", "3号楼"]
        } else {
            &["1号楼"]
        };
        let building = buildings[self.rng.below(buildings.len() as u64) as usize];
        let roll = self.rng.below(100);
        let held = households_of(&self.phones[i].dev.store, grid);
        let m = self.marker(grid, i);
        let store = &mut self.phones[i].dev.store;
        if roll < 40 && !held.is_empty() {
            let h = &held[self.rng.below(held.len() as u64) as usize];
            store
                .add_visit(
                    h,
                    NewVisit {
                        purpose: m,
                        note: String::new(),
                        follow_up: None,
                    },
                )
                .unwrap();
        } else if roll < 65 {
            let mut new = household(
                grid,
                building,
                &format!("{}", 1000 + self.next_marker),
                "张桂兰",
            );
            new.note = m;
            store.create_household(new).unwrap();
        } else if roll < 85 {
            store
                .create_record(record(grid, Some(building), &m))
                .unwrap();
        } else if store.actor().role == xiuhua_core::Role::Secretary {
            // A 社区书记 does not order tasks: a record instead.
            store.create_record(record(grid, None, &m)).unwrap();
        } else {
            store.create_task(task(grid, None, &m)).unwrap();
        }
    }

    /// The markers phone `i` must hold right after a successful sync: every acknowledged
    /// edit of the grids it holds now.
    fn check_success(&mut self, i: usize, before_success: Option<i64>) {
        let label = self.phones[i].label;
        let st = self.phones[i].dev.store.sync_status().unwrap();
        assert_eq!(
            self.phones[i].dev.store.outbox_len().unwrap(),
            0,
            "{label}: a sync said success with changes left in the outbox"
        );
        assert!(
            st.last_error.is_none(),
            "{label}: success with an error: {st:?}"
        );
        assert!(
            st.unfinished_since_ms.is_none(),
            "{label}: success but the status says unfinished"
        );
        assert!(st.last_success_ms.is_some() && st.last_success_ms >= before_success);
        assert!(st.last_sync.as_ref().is_some_and(|l| l.finished));
        // What this phone pushed is on the server now.
        for m in std::mem::take(&mut self.unacked[i]) {
            let g = self.made[&m];
            self.acked.insert(m, g);
        }
        let grants: BTreeSet<String> = self.phones[i]
            .dev
            .store
            .grants()
            .unwrap()
            .into_iter()
            .map(|g| g.grid)
            .collect();
        for grid in ["g1", "g2"] {
            // A grid whose grant changes during the run is checked at the end only.
            if !grants.contains(grid) || (self.mode.grants && label.starts_with("wang")) {
                continue;
            }
            let want: BTreeSet<&String> = self
                .acked
                .iter()
                .filter(|(_, g)| **g == grid)
                .map(|(m, _)| m)
                .collect();
            let have = markers(&mut self.phones[i].dev.store, grid);
            let missing: Vec<&&String> = want.iter().filter(|m| !have.contains(**m)).collect();
            assert!(
                missing.is_empty(),
                "{label}: a successful sync left {} acknowledged edits of {grid} missing: {missing:?}",
                missing.len()
            );
        }
    }

    fn check_failure(&mut self, i: usize, e: &Error, before_success: Option<i64>) {
        let label = self.phones[i].label;
        assert!(
            !matches!(e, Error::Revoked(_)),
            "{label}: nothing was revoked: {e}"
        );
        *self.errors.entry(kind(e)).or_insert(0) += 1;
        let st = self.phones[i].dev.store.sync_status().unwrap();
        assert!(st.last_error.is_some(), "{label}: a failure not recorded");
        assert_eq!(
            st.last_success_ms, before_success,
            "{label}: a failed sync moved the last success"
        );
        assert!(st.unfinished_since_ms.is_none());
        assert!(st.last_sync.as_ref().is_some_and(|l| !l.finished));
    }

    /// One sync of phone `i` in this process.
    fn sync(&mut self, i: usize) {
        let before = self.phones[i]
            .dev
            .store
            .sync_status()
            .unwrap()
            .last_success_ms;
        match self.phones[i].dev.sync() {
            Ok(_) => {
                self.ok += 1;
                self.check_success(i, before);
            }
            Err(e) => {
                self.failed += 1;
                self.check_failure(i, &e, before);
            }
        }
    }

    /// One sync of phone `i` in a child process killed at a random moment.
    fn sync_killed(&mut self, i: usize) {
        let wait = Duration::from_millis(self.rng.below(400));
        let dev = &mut self.phones[i].dev;
        let before = dev.store.sync_status().unwrap();
        let requests_before = self.proxy.requests();
        dev.close_store();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fault-phone"))
            .args(phone_args(dev))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the phone process starts");
        let started = Instant::now();
        let mut finished = false;
        while started.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !finished {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        dev.reopen_store();
        let st = dev.store.sync_status().unwrap();
        let label = self.phones[i].label;
        if text.contains("done") || text.contains("failed") {
            // It ended by itself: nothing is unfinished.
            assert!(st.unfinished_since_ms.is_none(), "{label}: {text}");
            if text.contains("done") {
                for m in std::mem::take(&mut self.unacked[i]) {
                    let g = self.made[&m];
                    self.acked.insert(m, g);
                }
            }
            return;
        }
        self.kills += 1;
        let progressed = st.last_success_ms != before.last_success_ms
            || st.last_error_ms != before.last_error_ms;
        if self.proxy.requests() > requests_before && !progressed {
            // Killed between its first request (which marks the sync as started) and its
            // end: the status must say so.
            assert!(
                st.unfinished_since_ms.is_some(),
                "{label}: killed mid-sync, yet the status does not say the sync did not finish: {st:?}"
            );
            self.kills_mid_sync += 1;
        }
    }
}

fn kind(e: &Error) -> String {
    match e {
        Error::Network(_) => "network".into(),
        Error::Sync { status, code, .. } => format!("{status} {code}"),
        Error::Unauthorized(_) => "unauthorized".into(),
        other => format!("{other}"),
    }
}

fn syncs() -> u64 {
    std::env::var("XIUHUA_FAULT_SYNCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

fn seed(default: u64) -> u64 {
    std::env::var("XIUHUA_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn run_mode(mode: Mode, default_seed: u64) {
    let seed = seed(default_seed);
    let n = syncs();
    let t0 = Instant::now();
    let mut run = Run::new(mode, seed);
    for step in 0..n {
        if step == n / 2 {
            run.join("u-wang", "wang2", vec!["g1"], run.phones[0].holds.clone());
        }
        if mode.grants {
            if step == n * 3 / 10 || step == n * 8 / 10 {
                run.server
                    .admin(&["grant", "u-wang", "--grid", "g2", "--role", "网格员"]);
            }
            if step == n * 6 / 10 {
                run.server
                    .admin(&["revoke-grant", "u-wang", "--grid", "g2"]);
            }
        }
        if step % 20 == 0 {
            eprintln!(
                "step {step}: {:.1} s, {} ok, {} failed",
                t0.elapsed().as_secs_f64(),
                run.ok,
                run.failed
            );
        }
        let i = run.rng.below(run.phones.len() as u64) as usize;
        for _ in 0..run.rng.below(4) {
            run.edit(i);
        }
        if mode.kill && run.phones[i].label == "chen" && run.rng.chance(40) {
            run.sync_killed(i);
        } else {
            run.sync(i);
        }
    }

    // A clean network: sync round after round until nothing moves.
    run.proxy.set_rate(0);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut moved = false;
        for i in 0..run.phones.len() {
            let label = run.phones[i].label;
            let before = run.phones[i]
                .dev
                .store
                .sync_status()
                .unwrap()
                .last_success_ms;
            let r = run.phones[i].dev.sync().unwrap_or_else(|e| {
                panic!("{label}: a clean sync failed after the faults: {e} (seed {seed})")
            });
            run.check_success(i, before);
            moved |= r.pushed > 0 || r.pulled > 0 || r.bootstrapped_docs > 0;
        }
        if !moved {
            break;
        }
        assert!(rounds < 10, "still not quiet after {rounds} clean rounds");
    }

    // Every phone shows the same rows, and every edit is on every phone.
    let reference = run.phones[0].dev.store.projection_dump().unwrap();
    for p in &run.phones {
        let dump = p.dev.store.projection_dump().unwrap();
        if dump != reference {
            let mine: BTreeSet<&str> = dump.lines().collect();
            let theirs: BTreeSet<&str> = reference.lines().collect();
            let extra: Vec<&&str> = mine.difference(&theirs).take(3).collect();
            let lacking: Vec<&&str> = theirs.difference(&mine).take(3).collect();
            panic!(
                "{} differs from {} (seed {seed}): {} rows vs {}; {} only: {extra:?}; {} lacks: {lacking:?}",
                p.label,
                run.phones[0].label,
                mine.len(),
                theirs.len(),
                p.label,
                p.label
            );
        }
    }
    for p in &mut run.phones {
        for grid in p.holds.clone() {
            let have = markers(&mut p.dev.store, grid);
            let missing: Vec<&String> = run
                .made
                .iter()
                .filter(|(m, g)| **g == grid && !have.contains(*m))
                .map(|(m, _)| m)
                .collect();
            assert!(
                missing.is_empty(),
                "{}: {} of {} edits of {grid} missing (seed {seed}): {missing:?}",
                p.label,
                missing.len(),
                run.made.len()
            );
        }
        let st = p.dev.store.sync_status().unwrap();
        assert_eq!(st.waiting_changes, 0, "{}: changes still waiting", p.label);
    }
    let faults = run.proxy.faults();
    for f in Fault::ALL {
        assert!(
            faults.get(&f).copied().unwrap_or(0) > 0,
            "the run never injected {f:?}: {faults:?}"
        );
    }
    assert!(
        run.failed > 0 && run.ok > 0,
        "ok {} failed {}",
        run.ok,
        run.failed
    );
    if mode.kill {
        assert!(
            run.kills_mid_sync > 0,
            "no kill landed mid-sync ({} kills)",
            run.kills
        );
    }
    eprintln!(
        "faults {mode:?} seed {seed}: {n} syncs ({} ok, {} failed: {:?}), {} edits, {} kills ({} mid-sync), {} requests, faults {faults:?}, {rounds} clean rounds, {:.1} s",
        run.ok,
        run.failed,
        run.errors,
        run.made.len(),
        run.kills,
        run.kills_mid_sync,
        run.proxy.requests(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn faults_with_fresh_tokens() {
    run_mode(Mode::default(), 1);
}

#[test]
fn faults_with_tokens_that_expire_every_sync() {
    run_mode(
        Mode {
            short_tokens: true,
            ..Mode::default()
        },
        2,
    );
}

#[test]
fn faults_with_grants_added_and_removed() {
    run_mode(
        Mode {
            grants: true,
            ..Mode::default()
        },
        3,
    );
}

#[test]
fn faults_with_a_phone_killed_mid_sync() {
    run_mode(
        Mode {
            kill: true,
            ..Mode::default()
        },
        4,
    );
}
