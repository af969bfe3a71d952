//! The store's schema: numbered migrations, applied in one IMMEDIATE transaction each,
//! with `PRAGMA user_version` as the schema version and `PRAGMA application_id` marking the
//! file as a Xiuhua store.

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// 'XHUA': marks a SQLite file as a Xiuhua store.
pub const APPLICATION_ID: i64 = 0x5848_5541;

/// Migration `i` takes the schema from version `i` to `i + 1`. Never edit a released one:
/// add a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: documents, outbox, cursors, projection.
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
    -- One row per document: its last full save (may be empty) and how many incremental chunks follow.
    -- A rowid table: documents are ~0.4-1 KB, which a WITHOUT ROWID b-tree packs badly.
    CREATE TABLE docs (
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        grid TEXT NOT NULL,
        snapshot BLOB NOT NULL,
        chunks INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE doc_chunks (
        doc TEXT NOT NULL,
        n INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (doc, n)
    ) WITHOUT ROWID;
    -- Local changes no server has acknowledged yet.
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc TEXT NOT NULL,
        grid TEXT NOT NULL,
        hash BLOB NOT NULL,
        change BLOB NOT NULL
    );
    CREATE TABLE sync_cursors (grid TEXT PRIMARY KEY, cursor TEXT NOT NULL) WITHOUT ROWID;

    CREATE TABLE households (
        id TEXT PRIMARY KEY,
        grid TEXT NOT NULL,
        building TEXT NOT NULL,
        unit TEXT NOT NULL,
        room TEXT NOT NULL,
        head_name TEXT NOT NULL,
        member_count INTEGER NOT NULL,
        tags TEXT NOT NULL,
        visit_count INTEGER NOT NULL,
        last_visit_at INTEGER,
        conflicts INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX households_addr ON households(grid, building, unit, room);
    CREATE TABLE residents (
        household TEXT NOT NULL,
        member TEXT NOT NULL,
        grid TEXT NOT NULL,
        building TEXT NOT NULL,
        name TEXT NOT NULL,
        pinyin TEXT NOT NULL,
        initials TEXT NOT NULL,
        phone TEXT,
        phone_rev TEXT,
        id_masked TEXT,
        gender TEXT NOT NULL,
        birth_year INTEGER NOT NULL,
        relation TEXT NOT NULL,
        tags TEXT NOT NULL,
        PRIMARY KEY (household, member)
    ) WITHOUT ROWID;
    CREATE INDEX residents_phone_rev ON residents(phone_rev);
    CREATE TABLE records (
        id TEXT PRIMARY KEY,
        grid TEXT NOT NULL,
        category TEXT NOT NULL,
        status TEXT NOT NULL,
        reporter TEXT NOT NULL,
        household TEXT,
        building TEXT,
        place TEXT NOT NULL,
        reported_at INTEGER NOT NULL,
        summary TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX records_status ON records(grid, status, category);
    CREATE INDEX records_household ON records(household);
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        grid TEXT NOT NULL,
        title TEXT NOT NULL,
        category TEXT NOT NULL,
        level TEXT,
        status TEXT NOT NULL,
        tier TEXT NOT NULL,
        assignee TEXT,
        deadline INTEGER,
        created_at INTEGER NOT NULL,
        household TEXT,
        source_record TEXT,
        rating INTEGER,
        rejected INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tasks_status_deadline ON tasks(status, deadline);
    CREATE INDEX tasks_assignee ON tasks(assignee, deadline);
    CREATE INDEX tasks_level ON tasks(grid, level, status);
    CREATE INDEX tasks_household ON tasks(household);
    "#,
    // 2: changes that arrived before the changes they depend on, kept until those arrive.
    r#"
    CREATE TABLE pending_changes (
        doc TEXT NOT NULL,
        hash BLOB NOT NULL,
        change BLOB NOT NULL,
        PRIMARY KEY (doc, hash)
    ) WITHOUT ROWID;
    "#,
    // 3: escalations recorded offline, sent to the server's /v1/escalate before the task's
    // `escalate` event is pushed. `outbox_id` is the first outbox entry of the change that
    // added the event: entries of the task from there on wait until the server accepted it.
    r#"
    CREATE TABLE pending_escalations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task TEXT NOT NULL,
        grid TEXT NOT NULL,
        tier TEXT NOT NULL,
        unit TEXT,
        outbox_id INTEGER NOT NULL
    );
    CREATE INDEX pending_escalations_task ON pending_escalations(task);
    "#,
    // 4: local changes of documents whose grant was lost (grid revoked, building taken off a
    // 楼门长): out of the outbox, never pushed, kept and listed until the user discards them.
    r#"
    CREATE TABLE set_aside (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc TEXT NOT NULL,
        grid TEXT NOT NULL,
        hash BLOB NOT NULL,
        change BLOB NOT NULL,
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX set_aside_doc ON set_aside(doc);
    "#,
    // 5: the status a record shows follows the tasks made from it
    // (`workflow::record_status_shown`); `status` stays the record's own. Filled for the
    // records with tasks by `projection::refresh_all_records_shown` in the same transaction.
    r#"
    ALTER TABLE records ADD COLUMN shown TEXT NOT NULL DEFAULT '待处理';
    UPDATE records SET shown = status;
    DROP INDEX records_status;
    CREATE INDEX records_shown ON records(grid, shown, category);
    CREATE INDEX tasks_source_record ON tasks(source_record) WHERE source_record IS NOT NULL;
    "#,
    // 6: lists, search, people; members' status and households moved out. Tasks keep the
    // 督单 reminder not yet answered and the bad rating that reopened them (the home list);
    // keyset-paged lists get their indexes; the text search is one `search_rows` row per
    // searchable field of a document (and of each resident of a household: `member`), its
    // text in the FTS5 trigram table `search_fts` under the same rowid; `people` holds the
    // names and roles of the grids' users from `/v1/session`; residents get their status
    // (迁出, 去世) and households the time they moved out. PROJECTION_VERSION 2 refills them.
    r#"
    ALTER TABLE tasks ADD COLUMN reminded_at INTEGER;
    ALTER TABLE tasks ADD COLUMN reopened_at INTEGER;
    CREATE INDEX tasks_page ON tasks(grid, coalesce(deadline, 9223372036854775807), id);
    CREATE INDEX records_page ON records(grid, reported_at, id);
    CREATE INDEX households_visit ON households(grid, last_visit_at);
    CREATE TABLE search_rows (
        id INTEGER PRIMARY KEY,
        doc TEXT NOT NULL,
        kind TEXT NOT NULL,
        grid TEXT NOT NULL,
        field TEXT NOT NULL,
        member TEXT
    );
    CREATE INDEX search_rows_doc ON search_rows(doc);
    CREATE INDEX search_rows_grid ON search_rows(grid);
    CREATE VIRTUAL TABLE search_fts USING fts5(body, tokenize = 'trigram');
    CREATE TABLE people (
        grid TEXT NOT NULL,
        user TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (grid, user)
    ) WITHOUT ROWID;
    ALTER TABLE residents ADD COLUMN status TEXT;
    ALTER TABLE households ADD COLUMN moved_out_at INTEGER;
    "#,
    // 7: 民情 records count their field conflicts, as households do (the conflicts screen
    // lists both). PROJECTION_VERSION 3 recounts them.
    r#"
    ALTER TABLE records ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX records_conflicts ON records(grid) WHERE conflicts > 0;
    "#,
    // 8: numbers for people (crate::numbers): records and tasks carry their number and the
    // provisional one a sync replaced, both findable; the blocks of numbers the server
    // reserved for this device, and the documents given a provisional number, to replace at
    // the next sync. PROJECTION_VERSION 4 fills the numbers.
    r#"
    ALTER TABLE records ADD COLUMN number TEXT;
    ALTER TABLE records ADD COLUMN provisional_number TEXT;
    ALTER TABLE tasks ADD COLUMN number TEXT;
    ALTER TABLE tasks ADD COLUMN provisional_number TEXT;
    CREATE INDEX records_number ON records(number) WHERE number IS NOT NULL;
    CREATE INDEX records_provisional_number ON records(provisional_number)
        WHERE provisional_number IS NOT NULL;
    CREATE INDEX tasks_number ON tasks(number) WHERE number IS NOT NULL;
    CREATE INDEX tasks_provisional_number ON tasks(provisional_number)
        WHERE provisional_number IS NOT NULL;
    CREATE TABLE number_blocks (
        community TEXT NOT NULL,
        year INTEGER NOT NULL,
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        next INTEGER NOT NULL,
        prefix TEXT NOT NULL,
        PRIMARY KEY (community, year, start)
    ) WITHOUT ROWID;
    CREATE TABLE provisional_numbers (
        doc TEXT PRIMARY KEY,
        year INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 9: the home list reads its 督单-reminded and reopened tasks by index, in their order
    // (without them it sorted every task of the grid: 0.1 s at K = 16).
    r#"
    CREATE INDEX tasks_reminded ON tasks(assignee, reminded_at, id) WHERE reminded_at IS NOT NULL;
    CREATE INDEX tasks_reopened ON tasks(assignee, reopened_at, id) WHERE reopened_at IS NOT NULL;
    "#,
];

/// The version whose migration added `records.shown`.
const RECORD_SHOWN_SINCE: i64 = 5;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Checks, without writing anything, that `path` is absent, empty, or a Xiuhua store this
/// build can open (with `key` when it is encrypted). A foreign, corrupt or wrongly keyed file
/// is refused and left exactly as it was.
pub(crate) fn check_existing(path: &std::path::Path, key: Option<&str>) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::NotXiuhuaDatabase(format!("{}: {e}", path.display()))),
    };
    if meta.len() == 0 {
        return Ok(());
    }
    if key.is_none() {
        let mut header = [0u8; 16];
        use std::io::Read;
        let mut f = std::fs::File::open(path)
            .map_err(|e| Error::NotXiuhuaDatabase(format!("{}: {e}", path.display())))?;
        if f.read_exact(&mut header).is_err() || &header != b"SQLite format 3\0" {
            return Err(Error::NotXiuhuaDatabase(format!(
                "{} is not a SQLite database (if it is an encrypted store, open it with its key)",
                path.display()
            )));
        }
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::NotXiuhuaDatabase(format!("{}: {e}", path.display())))?;
    if let Some(key) = key {
        conn.pragma_update(None, "key", key)?;
    }
    let unreadable = |e: rusqlite::Error| match (key, e.sqlite_error_code()) {
        (Some(_), Some(rusqlite::ErrorCode::NotADatabase)) => Error::WrongKey,
        _ => Error::NotXiuhuaDatabase(format!("{} cannot be read: {e}", path.display())),
    };
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(unreadable)?;
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(unreadable)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unreadable)?;
    if app != APPLICATION_ID {
        if app == 0 && version == 0 && tables == 0 {
            return Ok(()); // an empty SQLite file: ours to initialise
        }
        return Err(Error::NotXiuhuaDatabase(format!(
            "{} is a SQLite database of another application (application_id {app:#x})",
            path.display()
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(unreadable)?;
    if check != "ok" {
        return Err(Error::NotXiuhuaDatabase(format!(
            "{} is corrupt: {check}",
            path.display()
        )));
    }
    Ok(())
}

/// Applies connection settings and brings the schema up to `target` (normally
/// [`SCHEMA_VERSION`]; tests stop earlier to build an "old" database).
pub(crate) fn init(conn: &mut Connection, target: i64) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for v in version..target {
        let sql = MIGRATIONS
            .get(v as usize)
            .ok_or_else(|| Error::SchemaTooNew {
                found: v,
                supported: SCHEMA_VERSION,
            })?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        if v + 1 == RECORD_SHOWN_SINCE {
            super::projection::refresh_all_records_shown(&tx)?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
    }
    Ok(())
}
