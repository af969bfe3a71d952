//! Property: three phones doing random work offline, exchanging random partial sets of
//! changes in random order with duplicates, end with identical screens once everyone has
//! everything, and those screens are exactly what a rebuild from the documents gives.
//!
//! Cases: `XIUHUA_PROPTEST_CASES` (default 1000).

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use xiuhua_core::{Error, Level, RecordStatus, RemoteChange, Store, Tag, TaskAction, Tier};

use crate::common::*;

const PHONES: [&str; 4] = ["13800001111", "13900002222", "15000003333", "18600004444"];
// FIXME(core): Chinese notes fail or are garbled by `set_household_note` (see text.rs for the
// cause and fix); with ASCII-only notes this property holds (checked at 300 cases).
const NOTES: [&str; 4] = ["老两口，儿子在外地", "女儿每周来一次", "", "需要关注用药"];
const USERS: [&str; 3] = ["u-wang", "u-li", "u-zhao"];

#[derive(Debug, Clone)]
enum TaskOp {
    Assign(usize),
    Accept,
    Note,
    /// A reminder, with a new deadline this many days ahead.
    Supervise(Option<i64>),
    Complete,
    Inquire(bool),
    Rate(u8),
    ChangeLevel(usize),
    /// New deadline this many days ahead.
    ChangeDeadline(i64),
    /// To the community (false) or to a linked unit (true).
    Escalate(bool),
    Cancel,
}

#[derive(Debug, Clone)]
enum Op {
    Visit {
        hh: usize,
    },
    Phone {
        hh: usize,
        member: usize,
        phone: usize,
    },
    Tags {
        hh: usize,
        mask: u32,
    },
    Note {
        hh: usize,
        note: usize,
    },
    RecordStatus(usize),
    Task {
        task: usize,
        op: TaskOp,
    },
}

#[derive(Debug, Clone)]
enum Step {
    Act {
        replica: usize,
        op: Op,
    },
    /// Part of `from`'s changes (its outbox or everything) reach `to`, shuffled, some twice.
    Exchange {
        from: usize,
        to: usize,
        outbox: bool,
        seed: u64,
    },
}

fn task_op() -> impl Strategy<Value = TaskOp> {
    prop_oneof![
        (0..3usize).prop_map(TaskOp::Assign),
        Just(TaskOp::Accept),
        Just(TaskOp::Note),
        proptest::option::of(1..20i64).prop_map(TaskOp::Supervise),
        Just(TaskOp::Complete),
        any::<bool>().prop_map(TaskOp::Inquire),
        (1..=5u8).prop_map(TaskOp::Rate),
        (0..3usize).prop_map(TaskOp::ChangeLevel),
        (1..20i64).prop_map(TaskOp::ChangeDeadline),
        any::<bool>().prop_map(TaskOp::Escalate),
        Just(TaskOp::Cancel),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..2usize).prop_map(|hh| Op::Visit { hh }),
        1 => (0..2usize, 0..2usize, 0..PHONES.len()).prop_map(|(hh, member, phone)| Op::Phone { hh, member, phone }),
        1 => (0..2usize, 0..32u32).prop_map(|(hh, mask)| Op::Tags { hh, mask }),
        1 => (0..2usize, 0..NOTES.len()).prop_map(|(hh, note)| Op::Note { hh, note }),
        1 => (0..RecordStatus::ALL.len()).prop_map(Op::RecordStatus),
        4 => (0..2usize, task_op()).prop_map(|(task, op)| Op::Task { task, op }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3usize, op()).prop_map(|(replica, op)| Step::Act { replica, op }),
        1 => (0..3usize, 1..3usize, any::<bool>(), any::<u64>())
            .prop_map(|(from, d, outbox, seed)| Step::Exchange { from, to: (from + d) % 3, outbox, seed }),
    ]
}

/// A small deterministic generator (splitmix64) for subsets and shuffles.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct World {
    stores: Vec<Store>,
    clocks: Vec<FakeClock>,
    households: Vec<String>,
    members: Vec<Vec<String>>,
    tasks: Vec<String>,
    record: String,
}

fn world() -> World {
    // Three phones whose clocks disagree a little.
    let clocks = vec![
        FakeClock::new(MAR_2026),
        FakeClock::new(MAR_2026 + 30 * 60_000),
        FakeClock::new(MAR_2026 - 2 * HOUR),
    ];
    let mut stores: Vec<Store> = [wang(), li(), zhao()]
        .into_iter()
        .zip(&clocks)
        .map(|(a, c)| store(a, c))
        .collect();
    let s = &mut stores[0];
    let mut households = Vec::new();
    let mut members = Vec::new();
    for (room, (head, spouse)) in [("101", ("张三", "李梅")), ("202", ("曾小明", "单丽"))]
    {
        let hh = s
            .create_household(new_household(
                "3号楼",
                "1单元",
                room,
                vec![
                    member(head, Some("13800001234"), None, xiuhua_core::Relation::Head),
                    member(spouse, None, None, xiuhua_core::Relation::Spouse),
                ],
            ))
            .unwrap();
        members.push(
            s.household(&hh)
                .unwrap()
                .members
                .iter()
                .map(|m| m.id.clone())
                .collect(),
        );
        households.push(hh);
    }
    let tasks = vec![
        s.create_task(new_task(
            "代办低保年审",
            Some("u-wang"),
            Some(MAR_2026 + 5 * DAY),
            Some(&households[0]),
        ))
        .unwrap(),
        s.create_task(new_task(
            "楼道堆物清理",
            None,
            Some(MAR_2026 + 3 * DAY),
            None,
        ))
        .unwrap(),
    ];
    let record = s
        .create_record(new_record(
            xiuhua_core::Category::Repair,
            Some(&households[1]),
        ))
        .unwrap();
    let all = stores[0].export_all().unwrap();
    for s in &mut stores[1..] {
        let r = s.apply_remote(&all).unwrap();
        assert_eq!(r.waiting, 0);
    }
    World {
        stores,
        clocks,
        households,
        members,
        tasks,
        record,
    }
}

fn task_action(s: &Store, op: &TaskOp) -> TaskAction {
    let now = s.now_ms();
    match op {
        TaskOp::Assign(u) => TaskAction::Assign {
            assignee: USERS[*u].into(),
        },
        TaskOp::Accept => TaskAction::Accept,
        TaskOp::Note => TaskAction::Note {
            text: "已电话联系".into(),
        },
        TaskOp::Supervise(days) => TaskAction::Supervise {
            text: "请尽快办理".into(),
            new_deadline: days.map(|d| now + d * DAY),
        },
        TaskOp::Complete => TaskAction::Complete {
            result: "已办结".into(),
        },
        TaskOp::Inquire(send_back) => TaskAction::Inquire {
            text: "居民满意吗？".into(),
            send_back: *send_back,
        },
        TaskOp::Rate(score) => TaskAction::Rate {
            score: *score,
            comment: "评价".into(),
        },
        TaskOp::ChangeLevel(l) => TaskAction::ChangeLevel {
            level: Level::ALL[*l],
        },
        TaskOp::ChangeDeadline(days) => TaskAction::ChangeDeadline {
            deadline: now + days * DAY,
        },
        TaskOp::Escalate(false) => TaskAction::Escalate {
            tier: Tier::Community,
            unit: None,
        },
        TaskOp::Escalate(true) => TaskAction::Escalate {
            tier: Tier::LinkedUnit,
            unit: Some("物业".into()),
        },
        TaskOp::Cancel => TaskAction::Cancel {
            reason: "居民撤回".into(),
        },
    }
}

/// Runs one user action; actions the rules refuse are skipped, anything else fails the case.
fn act(w: &mut World, replica: usize, op: &Op) -> Result<(), TestCaseError> {
    let s = &mut w.stores[replica];
    let r = match op {
        Op::Visit { hh } => s.add_visit(&w.households[*hh], visit("走访")).map(drop),
        Op::Phone { hh, member, phone } => s.set_member_phone(
            &w.households[*hh],
            &w.members[*hh][*member],
            Some(PHONES[*phone]),
        ),
        Op::Tags { hh, mask } => {
            let tags: Vec<Tag> = Tag::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, t)| *t)
                .collect();
            s.set_household_tags(&w.households[*hh], &tags)
        }
        Op::Note { hh, note } => s.set_household_note(&w.households[*hh], NOTES[*note]),
        Op::RecordStatus(i) => s.set_record_status(&w.record, RecordStatus::ALL[*i]),
        Op::Task { task, op } => {
            let action = task_action(s, op);
            s.task_action(&w.tasks[*task], action).map(drop)
        }
    };
    match r {
        Ok(()) | Err(Error::Refused(_)) | Err(Error::Invalid { .. }) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!(
            "replica {replica}: {op:?} failed unexpectedly: {e}"
        ))),
    }
}

fn exchange(
    w: &mut World,
    from: usize,
    to: usize,
    outbox: bool,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut changes: Vec<RemoteChange> = if outbox {
        outbox_changes(&w.stores[from])
    } else {
        w.stores[from].export_all().unwrap()
    };
    let mut rng = Mix(seed);
    changes.retain(|_| rng.below(3) != 0);
    let dups: Vec<RemoteChange> = changes
        .iter()
        .filter(|_| rng.below(4) == 0)
        .cloned()
        .collect();
    changes.extend(dups);
    for i in (1..changes.len()).rev() {
        let j = rng.below(i + 1);
        changes.swap(i, j);
    }
    // Delivered in one or more batches (an interrupted pull resumes later).
    while !changes.is_empty() {
        let n = 1 + rng.below(changes.len());
        let batch: Vec<RemoteChange> = changes.drain(..n).collect();
        if let Err(e) = w.stores[to].apply_remote(&batch) {
            return Err(TestCaseError::fail(format!(
                "{from} → {to}: apply_remote failed: {e}"
            )));
        }
    }
    Ok(())
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut w = world();
    for step in steps {
        for c in &w.clocks {
            c.advance(7_000);
        }
        match step {
            Step::Act { replica, op } => act(&mut w, *replica, op)?,
            Step::Exchange {
                from,
                to,
                outbox,
                seed,
            } => exchange(&mut w, *from, *to, *outbox, *seed)?,
        }
    }
    // Everyone meets everyone: each replica receives everything the three have.
    let mut union: Vec<RemoteChange> = Vec::new();
    for s in &mut w.stores {
        union.extend(s.export_all().unwrap());
    }
    for (i, s) in w.stores.iter_mut().enumerate() {
        s.apply_remote(&union)
            .map_err(|e| TestCaseError::fail(format!("full exchange to {i}: {e}")))?;
    }
    // Every replica holds every change (nothing is left waiting for a dependency).
    let mut sets = Vec::new();
    for s in &mut w.stores {
        let mut all: Vec<(String, Vec<u8>)> = s
            .export_all()
            .unwrap()
            .into_iter()
            .map(|c| (c.doc, c.change))
            .collect();
        all.sort();
        sets.push(all);
    }
    prop_assert_eq!(
        &sets[0],
        &sets[1],
        "replicas 0 and 1 hold different changes"
    );
    prop_assert_eq!(
        &sets[0],
        &sets[2],
        "replicas 0 and 2 hold different changes"
    );
    let dumps: Vec<String> = w.stores.iter().map(dump).collect();
    prop_assert_eq!(&dumps[0], &dumps[1], "replicas 0 and 1 differ");
    prop_assert_eq!(&dumps[0], &dumps[2], "replicas 0 and 2 differ");
    let households = w.households.clone();
    let tasks = w.tasks.clone();
    let first_h: Vec<_> = households
        .iter()
        .map(|h| w.stores[0].household(h).unwrap())
        .collect();
    let first_t: Vec<_> = tasks
        .iter()
        .map(|t| w.stores[0].task(t).unwrap().view)
        .collect();
    for (i, s) in w.stores.iter_mut().enumerate() {
        for (h, expected) in households.iter().zip(&first_h) {
            prop_assert_eq!(
                &s.household(h).unwrap(),
                expected,
                "household {} on replica {}",
                h,
                i
            );
        }
        for (t, expected) in tasks.iter().zip(&first_t) {
            prop_assert_eq!(
                &s.task(t).unwrap().view,
                expected,
                "task {} on replica {}",
                t,
                i
            );
        }
        s.rebuild_projection().unwrap();
        prop_assert_eq!(
            &dump(s),
            &dumps[0],
            "replica {}: the rebuilt projection differs",
            i
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("XIUHUA_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn three_phones_converge_and_match_a_rebuild(steps in proptest::collection::vec(step(), 1..=25)) {
        run(&steps)?;
    }
}
