//! Shared helpers: actors, a deterministic clock, valid sample data, and change exchange.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use xiuhua_core::{
    Actor, Address, Category, Gender, Level, MergeReport, NewHousehold, NewMember, NewRecord,
    NewTask, NewVisit, Relation, RemoteChange, Role, Store, Tag,
};

pub const GRID: &str = "东城-01";
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;
/// 2026-03-01T00:00:00Z.
pub const MAR_2026: i64 = 1_772_323_200_000;

/// A device's wall clock that only moves when the test says so.
#[derive(Clone, Debug)]
pub struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    pub fn new(ms: i64) -> FakeClock {
        FakeClock(Arc::new(AtomicI64::new(ms)))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    /// Makes this clock the store's device clock.
    pub fn install(&self, store: &mut Store) {
        let c = Arc::clone(&self.0);
        store.set_time_source(move || c.load(Ordering::SeqCst));
    }
}

pub fn actor(user: &str, name: &str, role: Role, device: &str) -> Actor {
    Actor::new(user, name, role, device).expect("valid actor")
}

/// 网格员 王伟 on device A.
pub fn wang() -> Actor {
    actor("u-wang", "王伟", Role::GridMember, "dev-a")
}

/// 社区工作者 李娜 on device B.
pub fn li() -> Actor {
    actor("u-li", "李娜", Role::CommunityStaff, "dev-b")
}

/// 社区书记 赵敏 on device C.
pub fn zhao() -> Actor {
    actor("u-zhao", "赵敏", Role::Secretary, "dev-c")
}

/// An in-memory store driven by `clock`.
pub fn store(actor: Actor, clock: &FakeClock) -> Store {
    let mut s = Store::open_in_memory(actor).expect("open in memory");
    clock.install(&mut s);
    s
}

/// A resident ID number (GB 11643-1999) from its first 17 digits, with the right check
/// character appended.
pub fn id_number(body17: &str) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    assert_eq!(body17.len(), 17);
    let sum: u32 = body17
        .chars()
        .zip(WEIGHTS)
        .map(|(c, w)| c.to_digit(10).expect("digit") * w)
        .sum();
    format!("{body17}{}", CHECK[(sum % 11) as usize])
}

pub fn member(
    name: &str,
    phone: Option<&str>,
    id: Option<String>,
    relation: Relation,
) -> NewMember {
    NewMember {
        name: name.into(),
        gender: Gender::Male,
        birth_year: 1962,
        phone: phone.map(String::from),
        id_number: id,
        relation,
        tags: vec![],
    }
}

pub fn new_household(
    building: &str,
    unit: &str,
    room: &str,
    members: Vec<NewMember>,
) -> NewHousehold {
    NewHousehold {
        address: Address::new(GRID, building, unit, room).expect("address"),
        members,
        tags: vec![Tag::Relocated],
        note: "老住户".into(),
    }
}

/// 张三's household at 3号楼 1单元 101.
pub fn zhang_household() -> NewHousehold {
    new_household(
        "3号楼",
        "1单元",
        "101",
        vec![member("张三", Some("13800001234"), None, Relation::Head)],
    )
}

pub fn new_task(
    title: &str,
    assignee: Option<&str>,
    deadline: Option<i64>,
    household: Option<&str>,
) -> NewTask {
    NewTask {
        grid: GRID.into(),
        level: Level::Doorstep,
        category: Category::Service,
        title: title.into(),
        description: "居民申请".into(),
        household: household.map(String::from),
        source_record: None,
        assignee: assignee.map(String::from),
        deadline,
    }
}

pub fn new_record(category: Category, household: Option<&str>) -> NewRecord {
    NewRecord {
        grid: GRID.into(),
        category,
        description: "楼道灯坏了，晚上看不见".into(),
        reporter: "刘阿姨".into(),
        household: household.map(String::from),
        building: Some("3号楼".into()),
        place: "3号楼2单元楼道".into(),
    }
}

pub fn visit(purpose: &str) -> NewVisit {
    NewVisit {
        purpose: purpose.into(),
        note: "身体还好".into(),
        follow_up: None,
    }
}

/// Everything in the store's outbox, as a peer receives it.
pub fn outbox_changes(s: &Store) -> Vec<RemoteChange> {
    s.outbox(1_000_000)
        .expect("outbox")
        .into_iter()
        .map(|e| RemoteChange {
            doc: e.doc,
            change: e.change,
        })
        .collect()
}

/// Delivers `from`'s outbox to `to`, then acknowledges it (as a server would).
pub fn ship_outbox(from: &mut Store, to: &mut Store) -> MergeReport {
    let entries = from.outbox(1_000_000).expect("outbox");
    let changes: Vec<RemoteChange> = entries
        .iter()
        .map(|e| RemoteChange {
            doc: e.doc.clone(),
            change: e.change.clone(),
        })
        .collect();
    let report = to.apply_remote(&changes).expect("apply outbox");
    let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
    from.ack_outbox(&ids).expect("ack");
    report
}

/// Gives `to` every change `from` has.
pub fn share_all(from: &mut Store, to: &mut Store) -> MergeReport {
    let all = from.export_all().expect("export");
    to.apply_remote(&all).expect("apply export")
}

/// The whole projection, failing loudly.
pub fn dump(s: &Store) -> String {
    s.projection_dump().expect("dump")
}
