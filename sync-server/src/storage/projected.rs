//! The projection tables as both backends read and write them, written once: each table's
//! columns, the values of a row ([`Val`]), a row decoded from what a backend read
//! ([`RowGet`]), and the SQL of a selection ([`Select`]) in either dialect. A backend only
//! runs these statements (and [`crate::projection::shown_status`] for a record's shown
//! status) in its own transaction.

use crate::error::StoreError;
use crate::projection::{DocRows, EventP, HouseholdP, RecordP, ResidentP, TaskP, VisitP};
use xiuhua_core::DocKind;

use super::StoreResult;
use super::console::{BoardColumn, TaskSort, days_overdue_sql};

/// A projection table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Households,
    Residents,
    Visits,
    Records,
    Tasks,
    Events,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Households,
        Table::Residents,
        Table::Visits,
        Table::Records,
        Table::Tasks,
        Table::Events,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Households => "p_households",
            Table::Residents => "p_residents",
            Table::Visits => "p_visits",
            Table::Records => "p_records",
            Table::Tasks => "p_tasks",
            Table::Events => "p_task_events",
        }
    }

    /// The columns, in the order of the row structs' fields.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Households => &[
                "id",
                "grid",
                "building",
                "unit",
                "room",
                "head_name",
                "member_count",
                "tags",
                "visit_count",
                "last_visit_at",
                "conflicts",
                "created_at",
                "created_by",
                "moved_out_at",
            ],
            Table::Residents => &[
                "household",
                "pos",
                "member",
                "grid",
                "building",
                "name",
                "pinyin",
                "initials",
                "phone_masked",
                "id_masked",
                "gender",
                "birth_year",
                "relation",
                "tags",
                "status",
            ],
            Table::Visits => &[
                "household",
                "pos",
                "id",
                "grid",
                "at_ms",
                "by_user",
                "by_name",
                "purpose",
                "note",
                "follow_up",
            ],
            Table::Records => &[
                "id",
                "grid",
                "category",
                "status",
                "shown",
                "reporter",
                "household",
                "building",
                "place",
                "reported_at",
                "summary",
                "created_by",
            ],
            Table::Tasks => &[
                "id",
                "grid",
                "title",
                "category",
                "level",
                "status",
                "ordered",
                "tier",
                "linked_unit",
                "assignee",
                "deadline",
                "created_at",
                "created_by",
                "ordered_by",
                "household",
                "source_record",
                "rating",
                "rejected",
                "done_at",
                "closed_at",
                "reopened",
                "escalated",
                // Not a field of `TaskP`: the board's rules applied to it (written, not read).
                "board",
            ],
            Table::Events => &[
                "task",
                "id",
                "grid",
                "pos",
                "kind",
                "author",
                "author_name",
                "role",
                "at_ms",
                "body",
                "outcome",
                "reason",
            ],
        }
    }

    /// The column naming the document a row belongs to.
    pub fn doc_column(self) -> &'static str {
        match self {
            Table::Households | Table::Records | Table::Tasks => "id",
            Table::Residents | Table::Visits => "household",
            Table::Events => "task",
        }
    }

    /// The time a [`Select::range`] applies to.
    pub fn time_column(self) -> Option<&'static str> {
        match self {
            Table::Households | Table::Tasks => Some("created_at"),
            Table::Visits | Table::Events => Some("at_ms"),
            Table::Records => Some("reported_at"),
            Table::Residents => None,
        }
    }

    /// A fixed order (the primary key's).
    pub fn order(self) -> &'static str {
        match self {
            Table::Households | Table::Records | Table::Tasks => "id",
            Table::Residents | Table::Visits => "household, pos",
            Table::Events => "task, pos",
        }
    }

    /// The tables a document of `kind` has rows in, the document's own first.
    pub fn of_kind(kind: DocKind) -> &'static [Table] {
        match kind {
            DocKind::Household => &[Table::Households, Table::Residents, Table::Visits],
            DocKind::Record => &[Table::Records],
            DocKind::Task => &[Table::Tasks, Table::Events],
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Text(Option<String>),
    Int(Option<i64>),
    /// A list of texts (`IN` the list).
    Texts(Vec<String>),
}

impl Val {
    /// A count read back (a negative or missing one is 0).
    pub fn as_count(&self) -> usize {
        match self {
            Val::Int(Some(n)) => usize::try_from(*n).unwrap_or(0),
            _ => 0,
        }
    }
}

fn t(s: &str) -> Val {
    Val::Text(Some(s.to_string()))
}
fn ot(s: &Option<String>) -> Val {
    Val::Text(s.clone())
}
fn i(v: i64) -> Val {
    Val::Int(Some(v))
}
fn oi(v: Option<i64>) -> Val {
    Val::Int(v)
}
fn b(v: bool) -> Val {
    Val::Int(Some(i64::from(v)))
}

/// The placeholder style of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `?1`; a list is a JSON array read with `json_each`.
    Sqlite,
    /// `$1`; a list is a `TEXT[]`.
    Postgres,
}

impl Dialect {
    pub fn ph(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    fn in_list(self, col: &str, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("{col} IN (SELECT value FROM json_each(?{n}))"),
            Dialect::Postgres => format!("{col} = ANY(${n})"),
        }
    }

    /// `INSERT INTO table (…) VALUES (…)`.
    pub fn insert(self, table: Table) -> String {
        let cols = table.columns();
        let phs: Vec<String> = (1..=cols.len()).map(|n| self.ph(n)).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name(),
            cols.join(", "),
            phs.join(", ")
        )
    }

    /// Deletes a document's rows of `table` (one parameter: the id).
    pub fn delete(self, table: Table) -> String {
        format!(
            "DELETE FROM {} WHERE {} = {}",
            table.name(),
            table.doc_column(),
            self.ph(1)
        )
    }
}

/// A time range: `from_ms` included, `to_ms` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl TimeRange {
    pub fn contains(&self, ms: i64) -> bool {
        self.from_ms <= ms && ms < self.to_ms
    }
}

/// Which rows of a table to read. Every field narrows; the default reads everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Select {
    /// Only these grids (`None`: every grid).
    pub grids: Option<Vec<String>>,
    /// Only the rows of this document.
    pub doc: Option<String>,
    /// Only rows naming this household (records, tasks, residents, visits).
    pub household: Option<String>,
    /// Only rows whose time ([`Table::time_column`]) is in the range.
    pub range: Option<TimeRange>,
    /// Residents only: a `LIKE` pattern matched against the name and the pinyin keys.
    pub like: Option<String>,
    /// Tasks only: those made from one of these records (the 民情台账 joins a month's
    /// records to their tasks without reading every task of the grids).
    pub source_records: Option<Vec<String>>,
    /// Tasks only: of this level, category and assignee.
    pub level: Option<String>,
    pub category: Option<String>,
    pub assignee: Option<String>,
    /// Tasks only: in this column of the board at this time.
    pub column: Option<(BoardColumn, i64)>,
    /// Another order than the key's, and a page of it.
    pub order: Option<Order>,
    pub page: Option<Page>,
}

/// An order of the rows a [`Select`] reads, other than the table's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Records by report time, then id (the 民情台账's order).
    Reported,
    /// Tasks in a board's order ([`TaskSort`]) at a time (for most overdue).
    Board(TaskSort, i64),
}

/// Rows `offset..offset + limit` of a selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Select {
    pub fn grids(grids: &[String]) -> Select {
        Select {
            grids: Some(grids.to_vec()),
            ..Select::default()
        }
    }
    pub fn doc(id: &str) -> Select {
        Select {
            doc: Some(id.to_string()),
            ..Select::default()
        }
    }

    /// The statement and its values.
    pub fn sql(&self, table: Table, d: Dialect) -> (String, Vec<Val>) {
        let (filter, mut vals) = self.where_clause(table, d);
        let order = match self.order {
            None => table.order().to_string(),
            Some(Order::Reported) => "reported_at, id".to_string(),
            Some(Order::Board(sort, now)) => match sort {
                TaskSort::Deadline => "deadline IS NULL, deadline, id".to_string(),
                TaskSort::CreatedDesc => "created_at DESC, id DESC".to_string(),
                TaskSort::CreatedAsc => "created_at, id".to_string(),
                TaskSort::MostOverdue => {
                    vals.push(i(now));
                    let days = days_overdue_sql(&d.ph(vals.len()));
                    format!("({days}) IS NULL, ({days}) DESC, id")
                }
            },
        };
        let page = match self.page {
            None => String::new(),
            Some(p) => format!(
                " LIMIT {} OFFSET {}",
                p.limit.min(i64::MAX as usize),
                p.offset.min(i64::MAX as usize)
            ),
        };
        (
            format!(
                "SELECT {} FROM {}{filter} ORDER BY {order}{page}",
                table.columns().join(", "),
                table.name(),
            ),
            vals,
        )
    }

    /// The statement counting the selected tasks in each of the board's columns at `now`
    /// ([`BoardColumn::ALL`]'s order).
    pub fn board_counts(&self, d: Dialect, now: i64) -> Query {
        let (filter, mut vals) = self.where_clause(Table::Tasks, d);
        vals.push(i(now));
        let now = d.ph(vals.len());
        let sums: Vec<String> = BoardColumn::ALL
            .iter()
            .map(|c| {
                format!(
                    "COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0)",
                    c.sql(&now)
                )
            })
            .collect();
        Query {
            sql: format!("SELECT {} FROM p_tasks{filter}", sums.join(", ")),
            vals,
            types: vec![Ty::Int; sums.len()],
        }
    }

    /// The statement grouping the selected records by category and shown status, with
    /// how many of each have a task of one of the selection's grids made from them
    /// ([`super::console::RecordGroup`]'s columns).
    pub fn record_groups(&self, d: Dialect) -> Query {
        let (filter, mut vals) = self.where_clause(Table::Records, d);
        vals.push(Val::Texts(self.grids.clone().unwrap_or_default()));
        let task_grid = d.in_list("t.grid", vals.len());
        Query {
            sql: format!(
                "SELECT category, shown, COUNT(*), COALESCE(SUM(CASE WHEN EXISTS \
                 (SELECT 1 FROM p_tasks t WHERE t.source_record = p_records.id AND {task_grid}) \
                 THEN 1 ELSE 0 END), 0) FROM p_records{filter} GROUP BY category, shown"
            ),
            vals,
            types: vec![Ty::Text, Ty::Text, Ty::Int, Ty::Int],
        }
    }

    /// ` WHERE …` (or nothing) and its values.
    fn where_clause(&self, table: Table, d: Dialect) -> (String, Vec<Val>) {
        let mut conds = Vec::new();
        let mut vals = Vec::new();
        if let Some(g) = &self.grids {
            vals.push(Val::Texts(g.clone()));
            conds.push(d.in_list("grid", vals.len()));
        }
        if let Some(id) = &self.doc {
            vals.push(t(id));
            conds.push(format!("{} = {}", table.doc_column(), d.ph(vals.len())));
        }
        if let Some(h) = &self.household {
            let col = match table {
                Table::Households => "id",
                Table::Events => "task",
                _ => "household",
            };
            vals.push(t(h));
            conds.push(format!("{col} = {}", d.ph(vals.len())));
        }
        if let (Some(r), Some(col)) = (&self.range, table.time_column()) {
            vals.push(i(r.from_ms));
            vals.push(i(r.to_ms));
            conds.push(format!(
                "{col} >= {} AND {col} < {}",
                d.ph(vals.len() - 1),
                d.ph(vals.len())
            ));
        }
        if let (Some(p), Table::Residents) = (&self.like, table) {
            vals.push(t(p));
            let ph = d.ph(vals.len());
            conds.push(format!(
                "(name LIKE {ph} ESCAPE '\\' OR pinyin LIKE {ph} ESCAPE '\\' OR initials LIKE {ph} ESCAPE '\\')"
            ));
        }
        if table == Table::Tasks {
            if let Some(ids) = &self.source_records {
                vals.push(Val::Texts(ids.clone()));
                conds.push(d.in_list("source_record", vals.len()));
            }
            for (col, v) in [
                ("level", &self.level),
                ("category", &self.category),
                ("assignee", &self.assignee),
            ] {
                if let Some(v) = v {
                    vals.push(t(v));
                    conds.push(format!("{col} = {}", d.ph(vals.len())));
                }
            }
            if let Some((column, now)) = self.column {
                // Only the overdue column depends on the time: an unused value would be
                // refused by both databases.
                if column.bit().is_none() {
                    vals.push(i(now));
                }
                conds.push(column.sql(&d.ph(vals.len())));
            }
        }
        let filter = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        (filter, vals)
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The rows of a document as (table, values) pairs, in write order.
pub fn values_of(rows: &DocRows) -> Vec<(Table, Vec<Val>)> {
    let mut out = Vec::new();
    match rows {
        DocRows::Household {
            household: h,
            residents,
            visits,
        } => {
            out.push((
                Table::Households,
                vec![
                    t(&h.id),
                    t(&h.grid),
                    t(&h.building),
                    t(&h.unit),
                    t(&h.room),
                    t(&h.head_name),
                    i(h.member_count),
                    t(&h.tags),
                    i(h.visit_count),
                    oi(h.last_visit_at),
                    i(h.conflicts),
                    i(h.created_at),
                    t(&h.created_by),
                    oi(h.moved_out_at),
                ],
            ));
            for r in residents {
                out.push((
                    Table::Residents,
                    vec![
                        t(&r.household),
                        i(r.pos),
                        t(&r.member),
                        t(&r.grid),
                        t(&r.building),
                        t(&r.name),
                        t(&r.pinyin),
                        t(&r.initials),
                        ot(&r.phone_masked),
                        ot(&r.id_masked),
                        t(&r.gender),
                        i(r.birth_year),
                        t(&r.relation),
                        t(&r.tags),
                        ot(&r.status),
                    ],
                ));
            }
            for v in visits {
                out.push((
                    Table::Visits,
                    vec![
                        t(&v.household),
                        i(v.pos),
                        t(&v.id),
                        t(&v.grid),
                        i(v.at),
                        t(&v.by),
                        t(&v.by_name),
                        t(&v.purpose),
                        t(&v.note),
                        ot(&v.follow_up),
                    ],
                ));
            }
        }
        DocRows::Record(r) => out.push((Table::Records, record_values(r))),
        DocRows::Task { task: k, events } => {
            out.push((
                Table::Tasks,
                vec![
                    t(&k.id),
                    t(&k.grid),
                    t(&k.title),
                    t(&k.category),
                    ot(&k.level),
                    t(&k.status),
                    b(k.ordered),
                    t(&k.tier),
                    ot(&k.linked_unit),
                    ot(&k.assignee),
                    oi(k.deadline),
                    i(k.created_at),
                    t(&k.created_by),
                    ot(&k.ordered_by),
                    ot(&k.household),
                    ot(&k.source_record),
                    oi(k.rating),
                    i(k.rejected),
                    oi(k.done_at),
                    oi(k.closed_at),
                    b(k.reopened),
                    b(k.escalated),
                    i(super::console::board_flags(k)),
                ],
            ));
            for e in events {
                out.push((
                    Table::Events,
                    vec![
                        t(&e.task),
                        t(&e.id),
                        t(&e.grid),
                        i(e.pos),
                        t(&e.kind),
                        t(&e.author),
                        t(&e.author_name),
                        t(&e.role),
                        i(e.at),
                        t(&e.text),
                        t(&e.outcome),
                        ot(&e.reason),
                    ],
                ));
            }
        }
    }
    out
}

fn record_values(r: &RecordP) -> Vec<Val> {
    vec![
        t(&r.id),
        t(&r.grid),
        t(&r.category),
        t(&r.status),
        t(&r.shown),
        t(&r.reporter),
        ot(&r.household),
        ot(&r.building),
        t(&r.place),
        i(r.reported_at),
        t(&r.summary),
        t(&r.created_by),
    ]
}

/// Reads column `i` of a row a backend fetched.
pub trait RowGet {
    fn text(&self, i: usize) -> StoreResult<String>;
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>>;
    fn int(&self, i: usize) -> StoreResult<i64>;
    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>>;
    fn flag(&self, i: usize) -> StoreResult<bool> {
        Ok(self.int(i)? != 0)
    }
}

/// The type of a result column of a statement read with [`read_values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Int,
}

/// A statement of the shared SQL (counts, groups) whose result columns have these types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub sql: String,
    pub vals: Vec<Val>,
    pub types: Vec<Ty>,
}

/// A result row of a [`Query`], by its column types.
pub fn read_values(r: &impl RowGet, types: &[Ty]) -> StoreResult<Vec<Val>> {
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            Ok(match ty {
                Ty::Text => Val::Text(r.opt_text(i)?),
                Ty::Int => Val::Int(r.opt_int(i)?),
            })
        })
        .collect()
}

/// One projection row of any table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PRow {
    Household(HouseholdP),
    Resident(ResidentP),
    Visit(VisitP),
    Record(RecordP),
    Task(TaskP),
    Event(EventP),
}

/// Decodes a row of `table` read with the columns of [`Table::columns`].
pub fn decode(table: Table, r: &impl RowGet) -> StoreResult<PRow> {
    Ok(match table {
        Table::Households => PRow::Household(HouseholdP {
            id: r.text(0)?,
            grid: r.text(1)?,
            building: r.text(2)?,
            unit: r.text(3)?,
            room: r.text(4)?,
            head_name: r.text(5)?,
            member_count: r.int(6)?,
            tags: r.text(7)?,
            visit_count: r.int(8)?,
            last_visit_at: r.opt_int(9)?,
            conflicts: r.int(10)?,
            created_at: r.int(11)?,
            created_by: r.text(12)?,
            moved_out_at: r.opt_int(13)?,
        }),
        Table::Residents => PRow::Resident(ResidentP {
            household: r.text(0)?,
            pos: r.int(1)?,
            member: r.text(2)?,
            grid: r.text(3)?,
            building: r.text(4)?,
            name: r.text(5)?,
            pinyin: r.text(6)?,
            initials: r.text(7)?,
            phone_masked: r.opt_text(8)?,
            id_masked: r.opt_text(9)?,
            gender: r.text(10)?,
            birth_year: r.int(11)?,
            relation: r.text(12)?,
            tags: r.text(13)?,
            status: r.opt_text(14)?,
        }),
        Table::Visits => PRow::Visit(VisitP {
            household: r.text(0)?,
            pos: r.int(1)?,
            id: r.text(2)?,
            grid: r.text(3)?,
            at: r.int(4)?,
            by: r.text(5)?,
            by_name: r.text(6)?,
            purpose: r.text(7)?,
            note: r.text(8)?,
            follow_up: r.opt_text(9)?,
        }),
        Table::Records => PRow::Record(RecordP {
            id: r.text(0)?,
            grid: r.text(1)?,
            category: r.text(2)?,
            status: r.text(3)?,
            shown: r.text(4)?,
            reporter: r.text(5)?,
            household: r.opt_text(6)?,
            building: r.opt_text(7)?,
            place: r.text(8)?,
            reported_at: r.int(9)?,
            summary: r.text(10)?,
            created_by: r.text(11)?,
        }),
        Table::Tasks => PRow::Task(TaskP {
            id: r.text(0)?,
            grid: r.text(1)?,
            title: r.text(2)?,
            category: r.text(3)?,
            level: r.opt_text(4)?,
            status: r.text(5)?,
            ordered: r.flag(6)?,
            tier: r.text(7)?,
            linked_unit: r.opt_text(8)?,
            assignee: r.opt_text(9)?,
            deadline: r.opt_int(10)?,
            created_at: r.int(11)?,
            created_by: r.text(12)?,
            ordered_by: r.opt_text(13)?,
            household: r.opt_text(14)?,
            source_record: r.opt_text(15)?,
            rating: r.opt_int(16)?,
            rejected: r.int(17)?,
            done_at: r.opt_int(18)?,
            closed_at: r.opt_int(19)?,
            reopened: r.flag(20)?,
            escalated: r.flag(21)?,
        }),
        Table::Events => PRow::Event(EventP {
            task: r.text(0)?,
            id: r.text(1)?,
            grid: r.text(2)?,
            pos: r.int(3)?,
            kind: r.text(4)?,
            author: r.text(5)?,
            author_name: r.text(6)?,
            role: r.text(7)?,
            at: r.int(8)?,
            text: r.text(9)?,
            outcome: r.text(10)?,
            reason: r.opt_text(11)?,
        }),
    })
}

/// Rows read from the projection, by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pub households: Vec<HouseholdP>,
    pub residents: Vec<ResidentP>,
    pub visits: Vec<VisitP>,
    pub records: Vec<RecordP>,
    pub tasks: Vec<TaskP>,
    pub events: Vec<EventP>,
}

impl Projection {
    pub fn push(&mut self, row: PRow) {
        match row {
            PRow::Household(r) => self.households.push(r),
            PRow::Resident(r) => self.residents.push(r),
            PRow::Visit(r) => self.visits.push(r),
            PRow::Record(r) => self.records.push(r),
            PRow::Task(r) => self.tasks.push(r),
            PRow::Event(r) => self.events.push(r),
        }
    }
}

/// Reads the statuses of the tasks of grid `$2` made from record `$1` (a task of another
/// grid naming the record changes nothing).
pub fn tasks_of_record_sql(d: Dialect) -> String {
    format!(
        "SELECT status FROM p_tasks WHERE source_record = {} AND grid = {}",
        d.ph(1),
        d.ph(2)
    )
}

/// Reads a record's own status and grid (one parameter: the id).
pub fn record_status_sql(d: Dialect) -> String {
    format!("SELECT status, grid FROM p_records WHERE id = {}", d.ph(1))
}

/// Sets a record's shown status (id, shown).
pub fn set_shown_sql(d: Dialect) -> String {
    format!(
        "UPDATE p_records SET shown = {} WHERE id = {}",
        d.ph(2),
        d.ph(1)
    )
}

/// Reads the record a stored task was made from (one parameter).
pub fn task_link_sql(d: Dialect) -> String {
    format!("SELECT source_record FROM p_tasks WHERE id = {}", d.ph(1))
}

/// A bad value read back from the projection tables.
pub fn bad_row(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("projection row: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_in_both_dialects() {
        let sel = Select {
            grids: Some(vec!["g1".into()]),
            range: Some(TimeRange {
                from_ms: 1,
                to_ms: 2,
            }),
            ..Select::default()
        };
        let (sql, vals) = sel.sql(Table::Tasks, Dialect::Sqlite);
        assert!(
            sql.contains("grid IN (SELECT value FROM json_each(?1))"),
            "{sql}"
        );
        assert!(
            sql.contains("created_at >= ?2 AND created_at < ?3"),
            "{sql}"
        );
        assert!(sql.ends_with("ORDER BY id"), "{sql}");
        assert_eq!(vals.len(), 3);
        let (sql, _) = sel.sql(Table::Tasks, Dialect::Postgres);
        assert!(sql.contains("grid = ANY($1)"), "{sql}");
        assert!(
            sql.contains("created_at >= $2 AND created_at < $3"),
            "{sql}"
        );
        let by_record = Select {
            source_records: Some(vec!["r1".into(), "r2".into()]),
            ..sel.clone()
        };
        let (sql, vals) = by_record.sql(Table::Tasks, Dialect::Sqlite);
        assert!(
            sql.contains("source_record IN (SELECT value FROM json_each(?4))"),
            "{sql}"
        );
        assert_eq!(vals[3], Val::Texts(vec!["r1".into(), "r2".into()]));
        let (sql, _) = by_record.sql(Table::Tasks, Dialect::Postgres);
        assert!(sql.contains("source_record = ANY($4)"), "{sql}");
        let (sql, _) = by_record.sql(Table::Records, Dialect::Postgres);
        assert!(!sql.contains("source_record"), "tasks only: {sql}");
        // Residents have no time column: the range is not applied.
        let (sql, vals) = sel.sql(Table::Residents, Dialect::Postgres);
        assert!(!sql.contains(">="), "{sql}");
        assert_eq!(vals.len(), 1);
        assert_eq!(
            Dialect::Postgres.insert(Table::Records),
            "INSERT INTO p_records (id, grid, category, status, shown, reporter, household, building, place, reported_at, summary, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        assert_eq!(like_escape("a%b_c\\"), "a\\%b\\_c\\\\");
    }

    #[test]
    fn every_table_has_as_many_values_as_columns() {
        for table in Table::ALL {
            assert!(!table.columns().is_empty());
        }
        let r = RecordP {
            id: "r".into(),
            grid: "g".into(),
            category: String::new(),
            status: String::new(),
            shown: String::new(),
            reporter: String::new(),
            household: None,
            building: None,
            place: String::new(),
            reported_at: 0,
            summary: String::new(),
            created_by: String::new(),
        };
        assert_eq!(record_values(&r).len(), Table::Records.columns().len());
    }
}
