//! The domain model: addresses, households, 民情 records and 代办 tasks, with validating
//! constructors. These structs are also the shape of the Automerge documents (through
//! autosurgeon): free text that people edit together is [`Text`], identifiers and enums
//! are scalars.

use std::collections::BTreeMap;

use autosurgeon::{Hydrate, HydrateError, Reconcile, Text};

use crate::error::{Error, Result};
use crate::validate;

/// Declares an enum stored as a fixed string scalar in documents and in SQLite.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $var),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The stored (and displayed) string.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
            /// Parses the stored string; anything else is an [`Error::Invalid`].
            pub fn parse(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok($name::$var),)+
                    // The refused value is not echoed: it may be anything a client sent.
                    _ => Err(Error::invalid(
                        stringify!($name),
                        format!("is not a known value; expected one of: {}",
                            [$($s),+].join(", ")),
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> { $name::parse(s) }
        }

        // The value is its own key: in a list (a set of tags) an edit deletes and inserts
        // exactly the values removed and added, so concurrent edits of different values
        // merge as set edits instead of overwriting each other's positions.
        impl Reconcile for $name {
            type Key<'a> = String;
            fn reconcile<R: autosurgeon::Reconciler>(&self, reconciler: R) -> Result<(), R::Error> {
                self.as_str().reconcile(reconciler)
            }
            fn hydrate_key<'a, D: autosurgeon::ReadDoc>(
                doc: &D,
                obj: &automerge::ObjId,
                prop: autosurgeon::Prop<'_>,
            ) -> Result<autosurgeon::reconcile::LoadKey<Self::Key<'a>>, autosurgeon::ReconcileError> {
                use autosurgeon::reconcile::LoadKey;
                Ok(match autosurgeon::hydrate_prop::<_, String, _, _>(doc, obj, prop) {
                    Ok(s) => LoadKey::Found(s),
                    Err(_) => LoadKey::KeyNotFound,
                })
            }
            fn key(&self) -> autosurgeon::reconcile::LoadKey<Self::Key<'_>> {
                autosurgeon::reconcile::LoadKey::Found(self.as_str().to_string())
            }
        }

        impl Hydrate for $name {
            fn hydrate_string(s: &str) -> Result<Self, HydrateError> {
                $name::parse(s).map_err(|e| HydrateError::unexpected(stringify!($name), e.to_string()))
            }
        }
    };
}

string_enum!(
    /// 性别.
    Gender { Male => "男", Female => "女" }
);

string_enum!(
    /// Tags of a person or a household (党员中心户 and the welfare / attention tags).
    Tag {
        PartyMember => "党员",
        PartyHub => "党员中心户",
        Relocated => "回迁",
        LivingAlone => "独居老人",
        Dibao => "低保",
        Disabled => "残疾",
        Veteran => "退役军人",
        Floating => "流动人口",
        EmptyNest => "空巢",
        KeyConcern => "重点关注",
        Volunteer => "志愿者",
    }
);

string_enum!(
    /// A member's relation to the head of the household.
    Relation { Head => "户主", Spouse => "配偶", Child => "子女", Parent => "父母", Grandchild => "孙子女", Other => "其他" }
);

string_enum!(
    /// Whether a member still lives in the household. Members are never deleted for moving
    /// out or dying: the ledgers and the history keep them.
    MemberStatus { Living => "在册", MovedOut => "迁出", Deceased => "去世" }
);

string_enum!(
    /// Category of a 民情 record (and of the 代办 task made from it).
    Category {
        Dispute => "矛盾纠纷",
        Safety => "安全隐患",
        Environment => "环境卫生",
        Livelihood => "民生诉求",
        Policy => "政策咨询",
        Repair => "设施报修",
        PublicOrder => "治安防控",
        Service => "代办服务",
    }
);

string_enum!(
    /// Status of a 民情 record in the ledger.
    RecordStatus { Pending => "待处理", InProgress => "处理中", Resolved => "已办结", FollowedUp => "已回访" }
);

string_enum!(
    /// 三级代办: where the errand is done for the resident.
    Level { PartyMass => "党群办", Compound => "小区办", Doorstep => "上门办" }
);

string_enum!(
    /// What a user may do. Granted per grid (or per building for 楼门长).
    Role {
        GridMember => "网格员",
        BuildingLeader => "楼门长",
        CommunityStaff => "社区工作者",
        Secretary => "社区书记",
        Admin => "管理员",
    }
);

string_enum!(
    /// The folded state of a 代办 task (see WORKFLOW.md).
    TaskStatus {
        Ordered => "ordered",
        Assigned => "assigned",
        InProgress => "in_progress",
        Done => "done",
        Closed => "closed",
        Cancelled => "cancelled",
    }
);

impl TaskStatus {
    /// The Chinese label shown to users.
    pub fn label(self) -> &'static str {
        match self {
            TaskStatus::Ordered => "已点单",
            TaskStatus::Assigned => "已派单",
            TaskStatus::InProgress => "办理中",
            TaskStatus::Done => "已办结",
            TaskStatus::Closed => "已评价",
            TaskStatus::Cancelled => "已撤销",
        }
    }
    /// Whether the task still needs work (counts for overdue).
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            TaskStatus::Done | TaskStatus::Closed | TaskStatus::Cancelled
        )
    }
}

string_enum!(
    /// The kinds of task events (五单工作法 and the attribute changes).
    EventKind {
        Order => "order",
        Assign => "assign",
        Accept => "accept",
        Note => "note",
        Supervise => "supervise",
        Complete => "complete",
        Inquire => "inquire",
        Rate => "rate",
        ChangeLevel => "change_level",
        ChangeDeadline => "change_deadline",
        Escalate => "escalate",
        Cancel => "cancel",
    }
);

string_enum!(
    /// Escalation tier: 小事不出网格、大事不出社区 → linked unit of 1+3+N.
    Tier { Grid => "grid", Community => "community", LinkedUnit => "linked_unit" }
);

/// Who is acting on this device: recorded with every change and every task event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Stable user id (the server's), e.g. `u-wangwei`.
    pub user: String,
    /// Display name, e.g. 王伟.
    pub name: String,
    pub role: Role,
    /// Stable id of this device (one per installation).
    pub device: String,
}

impl Actor {
    pub fn new(user: &str, name: &str, role: Role, device: &str) -> Result<Actor> {
        Ok(Actor {
            user: validate::non_empty("user", user, 64)?,
            name: validate::name("name", name)?,
            role,
            device: validate::non_empty("device", device, 64)?,
        })
    }
}

/// Where a household lives: grid → building (楼栋) → unit (单元) → room.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Address {
    pub grid: String,
    pub building: String,
    pub unit: String,
    pub room: String,
}

impl Address {
    pub fn new(grid: &str, building: &str, unit: &str, room: &str) -> Result<Address> {
        Ok(Address {
            grid: validate::non_empty("grid", grid, 64)?,
            building: validate::non_empty("building", building, 32)?,
            unit: validate::non_empty("unit", unit, 32)?,
            room: validate::non_empty("room", room, 32)?,
        })
    }
}

/// A person in a household. `id` is stable across devices so that concurrent edits of the
/// same member meet on the same Automerge map.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Member {
    #[key]
    pub id: String,
    pub name: String,
    pub gender: Gender,
    pub birth_year: i64,
    pub phone: Option<String>,
    pub id_number: Option<String>,
    pub relation: Relation,
    pub tags: Vec<Tag>,
    /// `None` while the member lives here ([`MemberStatus::Living`] is never stored);
    /// absent in documents written before members had a status.
    #[autosurgeon(missing = "Default::default")]
    pub status: Option<MemberStatus>,
}

impl Member {
    /// What the member's status is, `Living` when none is stored.
    pub fn status(&self) -> MemberStatus {
        self.status.unwrap_or(MemberStatus::Living)
    }
}

/// What a caller supplies to add a member; validated by [`NewMember::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    pub name: String,
    pub gender: Gender,
    pub birth_year: i64,
    pub phone: Option<String>,
    pub id_number: Option<String>,
    pub relation: Relation,
    pub tags: Vec<Tag>,
}

impl NewMember {
    /// Checks every field and returns the member as stored, with the given id.
    pub fn validate(&self, id: String) -> Result<Member> {
        if !(1900..=2100).contains(&self.birth_year) {
            return Err(Error::invalid(
                "birth_year",
                format!("{} is not a plausible birth year", self.birth_year),
            ));
        }
        let phone = match self.phone.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) => Some(validate::mobile("phone", p)?),
        };
        let id_number = match self.id_number.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) => Some(validate::id_number("id_number", n)?),
        };
        Ok(Member {
            id,
            name: validate::name("name", &self.name)?,
            gender: self.gender,
            birth_year: self.birth_year,
            phone,
            id_number,
            relation: self.relation,
            tags: dedup_tags(&self.tags),
            status: None,
        })
    }
}

pub(crate) fn dedup_tags(tags: &[Tag]) -> Vec<Tag> {
    let mut t = tags.to_vec();
    t.sort();
    t.dedup();
    t
}

/// One door-to-door visit (走访) in a household's log.
#[derive(Debug, Clone, PartialEq, Eq, Reconcile, Hydrate)]
pub struct Visit {
    #[key]
    pub id: String,
    /// When, ms since the epoch (clock-anchored).
    pub at: i64,
    /// User id of the visitor.
    pub by: String,
    pub by_name: String,
    pub purpose: String,
    pub note: String,
    /// What must happen next, if anything.
    pub follow_up: Option<String>,
}

/// A caller's new visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVisit {
    pub purpose: String,
    pub note: String,
    pub follow_up: Option<String>,
}

/// The household document (户).
#[derive(Debug, Clone, PartialEq, Reconcile, Hydrate)]
pub struct Household {
    pub kind: String,
    pub id: String,
    pub address: Address,
    pub members: Vec<Member>,
    pub tags: Vec<Tag>,
    pub note: Text,
    pub visits: Vec<Visit>,
    pub created_at: i64,
    pub created_by: String,
    /// When the household left the grid (迁出), if it did; it stays on record.
    #[autosurgeon(missing = "Default::default")]
    pub moved_out_at: Option<i64>,
}

impl Household {
    /// A household document as the phone reads it: hydrated, then [`Household::normalize`]d.
    pub fn read_from(
        doc: &impl autosurgeon::ReadDoc,
    ) -> std::result::Result<Household, HydrateError> {
        let mut h: Household = autosurgeon::hydrate(doc)?;
        h.normalize();
        Ok(h)
    }

    /// Folds what concurrent edits can leave doubled: a tag added on two phones at once is
    /// in the document's list twice, and is one tag here (the next edit writes it once).
    pub fn normalize(&mut self) {
        self.tags = dedup_tags(&self.tags);
        for m in &mut self.members {
            m.tags = dedup_tags(&m.tags);
        }
    }

    /// The members who live here (neither moved out nor deceased).
    pub fn living(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.status.is_none())
    }
}

/// A caller's new household.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHousehold {
    pub address: Address,
    pub members: Vec<NewMember>,
    pub tags: Vec<Tag>,
    pub note: String,
}

/// The 民情 record document.
#[derive(Debug, Clone, PartialEq, Reconcile, Hydrate)]
pub struct Record {
    pub kind: String,
    pub id: String,
    pub grid: String,
    pub category: Category,
    pub description: Text,
    /// Who raised it (a resident's name, as told).
    pub reporter: String,
    pub household: Option<String>,
    pub building: Option<String>,
    /// Where: free text (楼道, 3号楼东侧 …).
    pub place: String,
    pub status: RecordStatus,
    pub reported_at: i64,
    pub created_by: String,
    /// The number people are given, `金湖-2026-000123` ([`crate::numbers`]); absent in
    /// documents written before numbers.
    pub number: Option<String>,
    /// The provisional number it had until the next sync replaced it (findable still).
    pub provisional_number: Option<String>,
}

/// A caller's new 民情 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    pub grid: String,
    pub category: Category,
    pub description: String,
    pub reporter: String,
    pub household: Option<String>,
    pub building: Option<String>,
    pub place: String,
}

/// One event in a task's append-only log. Stored flat (every payload field optional) so that
/// an event written by a newer app version still loads and is reported as rejected rather
/// than breaking the document. Kinds, roles, levels and tiers are kept as raw strings for the
/// same reason; [`crate::workflow`] parses them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Reconcile, Hydrate)]
pub struct TaskEvent {
    /// Unique id, e.g. `<device>-<hlc>`; the final tiebreak of the fold.
    pub id: String,
    /// An [`EventKind`] string.
    pub kind: String,
    /// The ids of the task's latest events (the heads of the event graph) as the author's
    /// device knew them when recording this one: the causal predecessors.
    pub prev: Vec<String>,
    /// User id of the author.
    pub author: String,
    pub author_name: String,
    /// A [`Role`] string: the role the author acted in.
    pub role: String,
    pub device: String,
    /// [`crate::hlc::Hlc`] as i64.
    pub hlc: i64,
    /// Free text: note, reminder text, result, inquiry, rating comment, cancel reason.
    pub text: String,
    /// Assign: the new assignee (user id or linked unit name).
    pub assignee: Option<String>,
    /// Order / ChangeLevel: a [`Level`] string.
    pub level: Option<String>,
    /// Order / Supervise / ChangeDeadline: the deadline, ms since the epoch.
    pub deadline: Option<i64>,
    /// Rate: 1..=5.
    pub score: Option<i64>,
    /// Inquire: whether the secretary sends the task back to `in_progress`.
    pub send_back: Option<bool>,
    /// Escalate: a [`Tier`] string.
    pub tier: Option<String>,
    /// Escalate to a linked unit: its name (物业, 建设, 执法, or a co-building unit).
    pub unit: Option<String>,
}

/// The 代办 task document. Its state is not stored: it is folded from `events`.
#[derive(Debug, Clone, PartialEq, Reconcile, Hydrate)]
pub struct Task {
    pub kind: String,
    pub id: String,
    pub grid: String,
    pub category: Category,
    pub title: String,
    pub description: Text,
    pub household: Option<String>,
    pub source_record: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    /// The number people are given ([`crate::numbers`]); absent in older documents.
    pub number: Option<String>,
    /// The provisional number it had until the next sync replaced it.
    pub provisional_number: Option<String>,
    /// Append-only set of events, keyed by event id.
    pub events: BTreeMap<String, TaskEvent>,
}

/// A caller's new task. The first event (点单) is written with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub grid: String,
    pub level: Level,
    pub category: Category,
    pub title: String,
    pub description: String,
    pub household: Option<String>,
    pub source_record: Option<String>,
    /// Named at creation, recorded as a 派单 event right after the order.
    pub assignee: Option<String>,
    /// ms since the epoch; must not be before creation.
    pub deadline: Option<i64>,
}

/// A workflow action a user records on a task (one event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskAction {
    Assign {
        assignee: String,
    },
    Accept,
    Note {
        text: String,
    },
    Supervise {
        text: String,
        new_deadline: Option<i64>,
    },
    Complete {
        result: String,
    },
    Inquire {
        text: String,
        send_back: bool,
    },
    Rate {
        score: u8,
        comment: String,
    },
    ChangeLevel {
        level: Level,
    },
    ChangeDeadline {
        deadline: i64,
    },
    Escalate {
        tier: Tier,
        unit: Option<String>,
    },
    Cancel {
        reason: String,
    },
}

/// The maxima of the model's fields, checked by the phone before it writes a document and by
/// the server on every push ([`Household::check_bounds`] and its siblings). Lengths are in
/// characters for text people type, in bytes for identifiers.
pub mod limits {
    /// Document, member, visit and event ids, and the household or record a document names
    /// (bytes).
    pub const ID: usize = 200;
    /// User ids and device ids (bytes).
    pub const USER: usize = 64;
    /// A person's name (characters); also [`crate::validate::name`]'s maximum.
    pub const NAME: usize = 32;
    /// A grid id (characters).
    pub const GRID: usize = 64;
    /// A building, unit or room (characters).
    pub const ADDRESS_PART: usize = 32;
    /// A task's title, a visit's purpose, a record's place (characters).
    pub const SHORT_TEXT: usize = 100;
    /// Notes, descriptions, follow-ups and the text of a task event (characters).
    pub const TEXT: usize = 2000;
    /// An event's assignee (a user id or a linked unit's name) and linked unit (characters).
    pub const ASSIGNEE: usize = 64;
    /// The raw enum strings of an event (kind, role, level, tier) (bytes).
    pub const ENUM: usize = 32;
    /// Members of one household.
    pub const MEMBERS: usize = 100;
    /// Visits logged for one household.
    pub const VISITS: usize = 5000;
    /// Events of one task.
    pub const EVENTS: usize = 2000;
    /// Causal predecessors named by one event.
    pub const PREV: usize = 64;
}

/// Refuses `s` when it is longer than `max` characters; names the field, never the value.
fn at_most_chars(field: &str, s: &str, max: usize) -> Result<()> {
    // Bytes first: no need to count the characters of a huge string.
    if s.len() > max * 4 || s.chars().count() > max {
        Err(Error::invalid(
            field,
            format!("is too long; at most {max} characters"),
        ))
    } else {
        Ok(())
    }
}

/// Refuses an identifier longer than `max` bytes.
fn at_most_bytes(field: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        Err(Error::invalid(
            field,
            format!("is too long; at most {max} bytes"),
        ))
    } else {
        Ok(())
    }
}

fn opt_bytes(field: &str, s: &Option<String>, max: usize) -> Result<()> {
    s.as_deref()
        .map_or(Ok(()), |s| at_most_bytes(field, s, max))
}

fn opt_chars(field: &str, s: &Option<String>, max: usize) -> Result<()> {
    s.as_deref()
        .map_or(Ok(()), |s| at_most_chars(field, s, max))
}

fn at_most_items(field: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        Err(Error::invalid(
            field,
            format!("holds more than {max} entries"),
        ))
    } else {
        Ok(())
    }
}

impl Household {
    /// The fields of a household document (its root keys).
    pub const FIELDS: &'static [&'static str] = &[
        "kind",
        "id",
        "address",
        "members",
        "tags",
        "note",
        "visits",
        "created_at",
        "created_by",
        "moved_out_at",
    ];

    /// Checks every string, text and list against [`limits`].
    pub fn check_bounds(&self) -> Result<()> {
        at_most_bytes("id", &self.id, limits::ID)?;
        at_most_bytes("created_by", &self.created_by, limits::USER)?;
        at_most_chars("address.grid", &self.address.grid, limits::GRID)?;
        for (f, v) in [
            ("address.building", &self.address.building),
            ("address.unit", &self.address.unit),
            ("address.room", &self.address.room),
        ] {
            at_most_chars(f, v, limits::ADDRESS_PART)?;
        }
        at_most_chars("note", self.note.as_str(), limits::TEXT)?;
        at_most_items("members", self.members.len(), limits::MEMBERS)?;
        for m in &self.members {
            at_most_bytes("member id", &m.id, limits::ID)?;
            at_most_chars("member name", &m.name, limits::NAME)?;
            // A valid phone has 11 digits and an ID number 18 characters; the values are
            // validated elsewhere, this only bounds what must be looked at.
            opt_chars("member phone", &m.phone, limits::ENUM)?;
            opt_chars("member id_number", &m.id_number, limits::ENUM)?;
        }
        at_most_items("visits", self.visits.len(), limits::VISITS)?;
        for v in &self.visits {
            at_most_bytes("visit id", &v.id, limits::ID)?;
            at_most_bytes("visit by", &v.by, limits::USER)?;
            at_most_chars("visit by_name", &v.by_name, limits::NAME)?;
            at_most_chars("visit purpose", &v.purpose, limits::SHORT_TEXT)?;
            at_most_chars("visit note", &v.note, limits::TEXT)?;
            opt_chars("visit follow_up", &v.follow_up, limits::TEXT)?;
        }
        Ok(())
    }
}

impl Record {
    /// The fields of a record document (its root keys).
    pub const FIELDS: &'static [&'static str] = &[
        "kind",
        "id",
        "grid",
        "category",
        "description",
        "reporter",
        "household",
        "building",
        "place",
        "status",
        "reported_at",
        "created_by",
        "number",
        "provisional_number",
    ];

    /// Checks every string and text against [`limits`].
    pub fn check_bounds(&self) -> Result<()> {
        at_most_bytes("id", &self.id, limits::ID)?;
        at_most_chars("grid", &self.grid, limits::GRID)?;
        at_most_chars("description", self.description.as_str(), limits::TEXT)?;
        at_most_chars("reporter", &self.reporter, limits::NAME)?;
        opt_bytes("household", &self.household, limits::ID)?;
        opt_chars("building", &self.building, limits::ADDRESS_PART)?;
        at_most_chars("place", &self.place, limits::SHORT_TEXT)?;
        opt_chars("number", &self.number, crate::numbers::MAX_NUMBER_CHARS)?;
        opt_chars(
            "provisional_number",
            &self.provisional_number,
            crate::numbers::MAX_NUMBER_CHARS,
        )?;
        at_most_bytes("created_by", &self.created_by, limits::USER)
    }
}

impl TaskEvent {
    /// Checks every string of the event against [`limits`].
    pub fn check_bounds(&self) -> Result<()> {
        at_most_bytes("event id", &self.id, limits::ID)?;
        for (f, v) in [("event kind", &self.kind), ("event role", &self.role)] {
            at_most_bytes(f, v, limits::ENUM)?;
        }
        at_most_items("event prev", self.prev.len(), limits::PREV)?;
        for p in &self.prev {
            at_most_bytes("event prev", p, limits::ID)?;
        }
        at_most_bytes("event author", &self.author, limits::USER)?;
        at_most_chars("event author_name", &self.author_name, limits::NAME)?;
        at_most_bytes("event device", &self.device, limits::USER)?;
        at_most_chars("event text", &self.text, limits::TEXT)?;
        opt_chars("event assignee", &self.assignee, limits::ASSIGNEE)?;
        opt_bytes("event level", &self.level, limits::ENUM)?;
        opt_bytes("event tier", &self.tier, limits::ENUM)?;
        opt_chars("event unit", &self.unit, limits::ASSIGNEE)
    }
}

impl Task {
    /// The fields of a task document (its root keys).
    pub const FIELDS: &'static [&'static str] = &[
        "kind",
        "id",
        "grid",
        "category",
        "title",
        "description",
        "household",
        "source_record",
        "created_at",
        "created_by",
        "number",
        "provisional_number",
        "events",
    ];

    /// Checks every string, text and event against [`limits`].
    pub fn check_bounds(&self) -> Result<()> {
        at_most_bytes("id", &self.id, limits::ID)?;
        at_most_chars("grid", &self.grid, limits::GRID)?;
        at_most_chars("title", &self.title, limits::SHORT_TEXT)?;
        at_most_chars("description", self.description.as_str(), limits::TEXT)?;
        opt_bytes("household", &self.household, limits::ID)?;
        opt_bytes("source_record", &self.source_record, limits::ID)?;
        opt_chars("number", &self.number, crate::numbers::MAX_NUMBER_CHARS)?;
        opt_chars(
            "provisional_number",
            &self.provisional_number,
            crate::numbers::MAX_NUMBER_CHARS,
        )?;
        at_most_bytes("created_by", &self.created_by, limits::USER)?;
        at_most_items("events", self.events.len(), limits::EVENTS)?;
        for (key, e) in &self.events {
            at_most_bytes("event key", key, limits::ID)?;
            e.check_bounds()?;
        }
        Ok(())
    }
}
