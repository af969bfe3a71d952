//! Maps the generated workload onto the domain model, deterministically: the same JSON
//! always gives the same documents.
//!
//! What the workload lacks is derived from what it has:
//! - member ids: `<household id>-m<k>`;
//! - ID numbers (the workload has none): GB 11643, region 110101, the birth year from the
//!   JSON with a month and day derived from the member's serial number, a sequence number
//!   from the serial (odd for men, even for women, as the standard says) and the computed
//!   check character;
//! - users: a person's user id is `u-` + the full pinyin of their name;
//! - task events: ids `ev-<task id>-<k>`, each one's `prev` the event before it, HLC
//!   `Hlc::new(ts * 1000, k)` with the wall time held monotone within a task (the generator
//!   draws each event's offset from the order independently, so a later event can carry an
//!   earlier `ts`; a real device's clock would not go back like that);
//! - event authors in roles the fold accepts: 点单 by the JSON actor as 网格员, 派单 by the JSON
//!   actor as 社区工作者 naming the task's assignee, 接单 / 办理 / 办结 by the assignee, 问单 by the
//!   JSON actor as 社区书记, 评单 by the JSON actor as 网格员 with a score of 3–5 from the index.

use std::collections::{BTreeMap, HashMap};

use automerge::AutoCommit;
use autosurgeon::Text;
use xiuhua_core::hlc::Hlc;
use xiuhua_core::store::{Rows, rows_of};
use xiuhua_core::{
    Actor, Address, Category, DocKind, Gender, Household, Level, NewMember, Record, RecordStatus,
    Relation, Role, Tag, Task, TaskAction, TaskEvent, doc, pinyin, workflow,
};

use crate::error::{Context, Result, msg};
use crate::workload::{JsonEvent, JsonHousehold, JsonTask, Workload};

/// The workload as domain values.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The one grid of the workload.
    pub grid: String,
    pub households: Vec<Household>,
    pub records: Vec<Record>,
    pub tasks: Vec<Task>,
}

/// Documents built from a [`Mapped`] workload, in the order households, records, tasks.
#[derive(Debug, Clone, Default)]
pub struct Built {
    /// (document id, `save()` bytes).
    pub docs: Vec<(String, Vec<u8>)>,
    /// The projection rows of every document, in the same order.
    pub rows: Vec<Rows>,
}

/// The user who seeded the grid: author of the household and record documents.
pub fn seed_actor() -> Result<Actor> {
    Ok(Actor::new(
        "u-seed",
        "网格数据导入",
        Role::GridMember,
        "seed-server",
    )?)
}

/// A person's user id: `u-` and the full pinyin of the name.
pub fn user_id(name: &str) -> String {
    let keys = pinyin::name_keys(name);
    match keys.full.first() {
        Some(full) => format!("u-{full}"),
        None => format!("u-{:x}", fnv1a(name.as_bytes())),
    }
}

fn person(name: &str, role: Role) -> Result<Actor> {
    let user = user_id(name);
    let device = format!("phone-{}", &user[2..]);
    Actor::new(&user, name, role, &device).context_with(|| format!("person {name:?}"))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A well-mixed 64-bit value of `x` (splitmix64's finaliser).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The GB 11643 check character of the first 17 digits.
pub fn id_check_char(first17: &[u8; 17]) -> u8 {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

/// A valid 18-character ID number for the member with this serial number.
pub fn id_number(birth_year: i64, serial: usize, gender: Gender) -> Result<String> {
    if !(1900..=2100).contains(&birth_year) {
        return Err(msg(format!("birth year {birth_year} is out of range")));
    }
    let h = mix(serial as u64);
    let month = 1 + h % 12;
    let day = 1 + (h >> 8) % 28;
    // 2..=998; odd (one less) for men, even for women.
    let even = (serial as u64 % 499 + 1) * 2;
    let seq = if gender == Gender::Male {
        even - 1
    } else {
        even
    };
    let body = format!("110101{birth_year:04}{month:02}{day:02}{seq:03}");
    let first17: &[u8; 17] = body
        .as_bytes()
        .try_into()
        .context("ID number body is not 17 characters")?;
    let mut id = body.clone();
    id.push(char::from(id_check_char(first17)));
    Ok(id)
}

fn parse_tags(tags: &[String], what: &str) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|t| Tag::parse(t).context_with(|| format!("{what}: tag")))
        .collect()
}

fn ms(seconds: i64) -> i64 {
    seconds.saturating_mul(1000)
}

fn household(h: &JsonHousehold, serial: &mut usize, seeder: &Actor) -> Result<Household> {
    let ctx = || format!("household {}", h.id);
    let members = h
        .members
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let gender = Gender::parse(&m.gender).context_with(ctx)?;
            let id_number = id_number(m.birth_year, *serial, gender).context_with(ctx)?;
            *serial += 1;
            NewMember {
                name: m.name.clone(),
                gender,
                birth_year: m.birth_year,
                phone: Some(m.phone.clone()),
                id_number: Some(id_number),
                relation: Relation::parse(&m.relation).context_with(ctx)?,
                tags: parse_tags(&m.tags, &h.id)?,
            }
            .validate(format!("{}-m{k}", h.id))
            .context_with(ctx)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut tags = parse_tags(&h.tags, &h.id)?;
    tags.sort();
    tags.dedup();
    Ok(Household {
        kind: DocKind::Household.as_str().into(),
        id: h.id.clone(),
        address: Address::new(&h.grid_id, &h.building, &h.unit, &h.room).context_with(ctx)?,
        members,
        tags,
        note: Text::with_value(h.note.trim()),
        visits: Vec::new(),
        created_at: ms(h.updated_at),
        created_by: seeder.user.clone(),
        moved_out_at: None,
    })
}

fn event(
    t: &JsonTask,
    index: usize,
    (k, e): (usize, &JsonEvent),
    level: Level,
    assignee: &Actor,
    prev: Vec<String>,
    hlc: i64,
) -> Result<TaskEvent> {
    let id = format!("ev-{}-{k}", t.id);
    let (action, author) = match e.action.as_str() {
        "点单" => {
            let author = person(&e.actor, Role::GridMember)?;
            let mut ev =
                workflow::order_event(level, Some(ms(t.due_at)), e.note.clone(), id, &author, hlc);
            ev.prev = prev;
            return Ok(ev);
        }
        "派单" => (
            TaskAction::Assign {
                assignee: assignee.user.clone(),
            },
            person(&e.actor, Role::CommunityStaff)?,
        ),
        "接单" => (TaskAction::Accept, assignee.clone()),
        "办理" => (
            TaskAction::Note {
                text: e.note.clone(),
            },
            assignee.clone(),
        ),
        "办结" => (
            TaskAction::Complete {
                result: e.note.clone(),
            },
            assignee.clone(),
        ),
        "问单" => (
            TaskAction::Inquire {
                text: e.note.clone(),
                send_back: false,
            },
            person(&e.actor, Role::Secretary)?,
        ),
        "评单" => (
            TaskAction::Rate {
                score: 3 + (index % 3) as u8,
                comment: e.note.clone(),
            },
            person(&e.actor, Role::GridMember)?,
        ),
        other => {
            return Err(msg(format!(
                "task {}: unknown action {other:?} in event {k}",
                t.id
            )));
        }
    };
    Ok(workflow::event_for(&action, id, prev, &author, hlc))
}

fn task(
    t: &JsonTask,
    index: usize,
    grid: &str,
    record_category: &HashMap<&str, Category>,
) -> Result<Task> {
    let ctx = || format!("task {}", t.id);
    let level = Level::parse(&t.level).context_with(ctx)?;
    let assignee = person(&t.assignee, Role::GridMember)?;
    let category = match &t.record_id {
        Some(r) => *record_category
            .get(r.as_str())
            .context_with(|| format!("task {}: record {r} is not in the workload", t.id))?,
        None => Category::Service,
    };
    let first = t
        .events
        .first()
        .context_with(|| format!("task {} has no events", t.id))?;
    if first.action != "点单" {
        return Err(msg(format!("task {}: the first event is not 点单", t.id)));
    }
    let mut events = BTreeMap::new();
    let mut prev: Option<String> = None;
    let mut wall: u64 = 0;
    for (k, e) in t.events.iter().enumerate() {
        let ts = u64::try_from(ms(e.ts)).context_with(ctx)?;
        wall = wall.max(ts);
        let counter = u16::try_from(k).context_with(ctx)?;
        let hlc = Hlc::new(wall, counter).as_i64();
        let ev = event(
            t,
            index,
            (k, e),
            level,
            &assignee,
            prev.iter().cloned().collect(),
            hlc,
        )?;
        prev = Some(ev.id.clone());
        events.insert(ev.id.clone(), ev);
    }
    Ok(Task {
        kind: DocKind::Task.as_str().into(),
        id: t.id.clone(),
        grid: grid.to_string(),
        category,
        title: t.title.clone(),
        description: Text::with_value(first.note.trim()),
        household: t.household_id.clone(),
        source_record: t.record_id.clone(),
        created_at: ms(t.created_at),
        created_by: user_id(&first.actor),
        number: None,
        provisional_number: None,
        events,
    })
}

/// Maps a workload onto the model. Fails on any value the model refuses, and on any task
/// whose events the workflow fold would reject.
pub fn map(w: &Workload) -> Result<Mapped> {
    let seeder = seed_actor()?;
    let grid = w
        .households
        .first()
        .map(|h| h.grid_id.clone())
        .context("the workload has no households")?;
    if let Some(h) = w.households.iter().find(|h| h.grid_id != grid) {
        return Err(msg(format!(
            "household {} is in grid {}, not {grid}: one grid per workload",
            h.id, h.grid_id
        )));
    }
    let mut serial = 0;
    let households = w
        .households
        .iter()
        .map(|h| household(h, &mut serial, &seeder))
        .collect::<Result<Vec<_>>>()?;
    let building_of: HashMap<&str, &str> = w
        .households
        .iter()
        .map(|h| (h.id.as_str(), h.building.as_str()))
        .collect();
    let records = w
        .records
        .iter()
        .map(|r| {
            let ctx = || format!("record {}", r.id);
            let building = building_of.get(r.household_id.as_str()).context_with(|| {
                format!("record {}: household {} not found", r.id, r.household_id)
            })?;
            Ok(Record {
                kind: DocKind::Record.as_str().into(),
                id: r.id.clone(),
                grid: grid.clone(),
                category: Category::parse(&r.category).context_with(ctx)?,
                description: Text::with_value(r.description.trim()),
                reporter: r.reporter.clone(),
                household: Some(r.household_id.clone()),
                building: Some((*building).to_string()),
                place: r.location.clone(),
                status: RecordStatus::parse(&r.status).context_with(ctx)?,
                reported_at: ms(r.reported_at),
                created_by: seeder.user.clone(),
                number: None,
                provisional_number: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let record_category: HashMap<&str, Category> = records
        .iter()
        .map(|r| (r.id.as_str(), r.category))
        .collect();
    let tasks = w
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| task(t, i, &grid, &record_category))
        .collect::<Result<Vec<_>>>()?;
    for t in &tasks {
        let view = workflow::fold(t.events.values());
        if let Some(rejected) = view.rejected().next() {
            return Err(msg(format!(
                "task {}: the fold does not accept event {} ({}): {:?}",
                t.id, rejected.event.id, rejected.event.kind, rejected.outcome
            )));
        }
    }
    Ok(Mapped {
        grid,
        households,
        records,
        tasks,
    })
}

enum Item<'a> {
    Household(&'a Household),
    Record(&'a Record),
    Task(&'a Task),
}

fn hlc_of(ms: i64) -> Hlc {
    Hlc::new(u64::try_from(ms).unwrap_or(0), 0)
}

fn build_one(item: &Item<'_>, seeder: &Actor) -> Result<(String, AutoCommit)> {
    Ok(match item {
        Item::Household(h) => (
            h.id.clone(),
            doc::build_document(*h, seeder, hlc_of(h.created_at), "register household")?,
        ),
        Item::Record(r) => (
            r.id.clone(),
            doc::build_document(*r, seeder, hlc_of(r.reported_at), "log record")?,
        ),
        Item::Task(t) => {
            let author = t
                .events
                .values()
                .find(|e| e.kind == "order")
                .map(|e| Actor::new(&e.author, &e.author_name, Role::GridMember, &e.device))
                .transpose()?
                .unwrap_or_else(|| seeder.clone());
            (
                t.id.clone(),
                doc::build_document(*t, &author, hlc_of(t.created_at), "order task")?,
            )
        }
    })
}

/// Builds every document (one change each) and saves it; with `rows`, also computes the
/// projection rows of each. Runs on all cores.
pub fn build(m: &Mapped, with_rows: bool) -> Result<Built> {
    let seeder = seed_actor()?;
    let items: Vec<Item<'_>> = m
        .households
        .iter()
        .map(Item::Household)
        .chain(m.records.iter().map(Item::Record))
        .chain(m.tasks.iter().map(Item::Task))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    type Part = Result<Vec<((String, Vec<u8>), Option<Rows>)>>;
    let parts: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let seeder = &seeder;
                s.spawn(move || -> Part {
                    part.iter()
                        .map(|item| {
                            let (id, mut d) = build_one(item, seeder)?;
                            let rows = if with_rows {
                                Some(rows_of(&id, &d)?.context_with(|| {
                                    format!("document {id} has no projection rows")
                                })?)
                            } else {
                                None
                            };
                            let bytes = d.save();
                            Ok(((id, bytes), rows))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(msg("a document builder thread panicked")))
            })
            .collect()
    });
    let mut built = Built::default();
    for part in parts {
        for (doc, rows) in part? {
            built.docs.push(doc);
            built.rows.extend(rows);
        }
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xiuhua_core::Store;
    use xiuhua_core::validate;

    fn tiny() -> Result<(Mapped, Built)> {
        let dir = tempfile::tempdir()?;
        let path = crate::workload::generate(dir.path(), 20, 40, 20)?;
        let w = crate::workload::read(&path)?;
        let m = map(&w)?;
        let built = build(&m, true)?;
        Ok((m, built))
    }

    #[test]
    fn id_numbers_are_valid_and_carry_gender() -> Result<()> {
        for serial in 0..2000 {
            for (gender, parity) in [(Gender::Male, 1), (Gender::Female, 0)] {
                let id = id_number(1935 + (serial as i64 % 85), serial, gender)?;
                assert_eq!(validate::id_number("id", &id)?, id);
                let seq = id.as_bytes()[16] - b'0';
                assert_eq!(seq % 2, parity, "{id}");
            }
        }
        // The standard's worked example: 11010519491231002X.
        assert_eq!(id_check_char(b"11010519491231002"), b'X');
        Ok(())
    }

    #[test]
    fn tiny_workload_maps_imports_and_folds_cleanly() -> Result<()> {
        let (m, built) = tiny()?;
        assert_eq!(m.households.len(), 20);
        assert_eq!(m.records.len(), 40);
        assert_eq!(m.tasks.len(), 20);
        assert_eq!(built.docs.len(), 80);
        assert_eq!(built.rows.len(), 80);
        for t in &m.tasks {
            let view = workflow::fold(t.events.values());
            assert_eq!(view.rejected().count(), 0, "task {}", t.id);
            assert_eq!(view.events.len(), t.events.len(), "task {}", t.id);
            assert_eq!(
                view.level.map(Level::as_str),
                Some(
                    t.events
                        .values()
                        .find_map(|e| e.level.as_deref())
                        .unwrap_or("")
                )
            );
        }

        let mut store = Store::open_in_memory(crate::measure::bench_actor()?)?;
        assert_eq!(store.import_documents(&built.docs)?, 80);

        let mut buildings: Vec<&str> = m
            .households
            .iter()
            .map(|h| h.address.building.as_str())
            .collect();
        buildings.sort();
        buildings.dedup();
        let listed: usize = buildings
            .iter()
            .map(|b| store.households_in(&m.grid, b, None).map(|v| v.len()))
            .sum::<Result<usize, _>>()?;
        assert_eq!(listed, 20);

        let ledger = store.ledger(&m.grid)?;
        assert_eq!(ledger.households, 20);
        let residents: usize = m.households.iter().map(|h| h.members.len()).sum();
        assert_eq!(ledger.residents, residents as i64);
        assert_eq!(ledger.records.iter().map(|r| r.2).sum::<i64>(), 40);
        assert_eq!(ledger.tasks.iter().map(|t| t.2).sum::<i64>(), 20);
        assert!(store.tasks_with_conflicts(&m.grid)?.is_empty());

        // Every task's folded status in the store matches the events it was given.
        for t in &m.tasks {
            let detail = store.task(&t.id)?;
            assert_eq!(detail.view.rejected().count(), 0, "task {}", t.id);
            let last = t
                .events
                .values()
                .max_by_key(|e| e.hlc)
                .map(|e| e.kind.as_str());
            let expected = match last {
                Some("complete") => "done",
                Some("accept" | "note") => "in_progress",
                Some("assign") => "assigned",
                other => panic!("task {} ends with {other:?}", t.id),
            };
            assert_eq!(detail.view.status.as_str(), expected, "task {}", t.id);
        }

        // A pinyin query made from a resident's name finds that resident.
        let name = &m.households[0].members[0].name;
        let q = crate::measure::pinyin_queries(&m, 3);
        assert!(!q.is_empty());
        let full = pinyin::name_keys(name).full[0].clone();
        let hits = store.search_residents(&full, 50)?;
        assert!(hits.iter().any(|h| &h.name == name), "{full}: {hits:?}");

        // The same workload maps to the same documents.
        let (_, again) = tiny()?;
        assert_eq!(again.docs, built.docs);
        Ok(())
    }
}
