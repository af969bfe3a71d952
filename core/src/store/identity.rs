//! Who the store acts as, and what happens to its data when that changes: enrollment
//! (a first one, a re-enrollment of the same user that keeps the work, a handover to
//! another user), sign-out, and the count of work not yet sent to the station.
//!
//! The rules (issue "sync survives", item 2):
//! - the store remembers whose data it holds (`identity.data_owner`: the device and user
//!   the data was written as, set at every enrollment);
//! - an enrollment for the **same user** keeps the documents and the outbox: the new device
//!   succeeds the old one on the server, which then accepts the old device's changes from
//!   it (`EnrollRequest::previous_device`), so the outbox syncs;
//! - an enrollment for **another user** is a handover: only with no unsynced work, and it
//!   erases every document first (the new user bootstraps what their grants cover);
//! - **sign-out** erases the residents' data from the phone with the credentials; with
//!   unsynced work it is refused ([`Error::UnsyncedWork`] says how much) unless forced.
//!
//! The decisions for enrollment are in `crate::sync::enroll_store`; this module holds the
//! store's side.

use super::Store;
use super::sync::{meta_json, meta_put, to_json};
use crate::error::{Error, Result};
use crate::model::{Actor, Role};
use crate::sync::proto;

const K_DATA_OWNER: &str = "identity.data_owner";

/// The device and user a store's data was written as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataOwner {
    pub device: String,
    pub user: String,
}

/// Work made on this phone that no server has acknowledged: the outbox (including changes
/// held after refusals) and the changes set aside when a grant was lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnsyncedWork {
    pub changes: u64,
    pub documents: u64,
    pub households: u64,
    pub records: u64,
    pub tasks: u64,
}

impl UnsyncedWork {
    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    /// "3 changes to 2 documents (1 household, 1 record)".
    pub fn describe(&self) -> String {
        let mut kinds = Vec::new();
        for (n, one, many) in [
            (self.households, "household", "households"),
            (self.records, "record", "records"),
            (self.tasks, "task", "tasks"),
        ] {
            match n {
                0 => {}
                1 => kinds.push(format!("1 {one}")),
                n => kinds.push(format!("{n} {many}")),
            }
        }
        format!(
            "{} change{} to {} document{}{}",
            self.changes,
            if self.changes == 1 { "" } else { "s" },
            self.documents,
            if self.documents == 1 { "" } else { "s" },
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            }
        )
    }

    /// The refusal of an action that would delete this work.
    pub fn refusal(&self, action: &str, remedy: &str) -> Error {
        Error::UnsyncedWork {
            changes: self.changes,
            documents: self.documents,
            message: format!(
                "{action} would delete {} made on this phone that the station has not received yet; nothing was changed: {remedy}",
                self.describe()
            ),
        }
    }
}

/// What a sign-out deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignedOut {
    /// The documents erased from the phone.
    pub documents: u64,
    /// The unsynced work deleted with them (only with `force`).
    pub unsynced: UnsyncedWork,
}

/// The tables that hold the data of documents (everything but `meta`).
const DATA_TABLES: &[&str] = &[
    "docs",
    "doc_chunks",
    "outbox",
    "sync_cursors",
    "households",
    "residents",
    "records",
    "tasks",
    "pending_changes",
    "pending_escalations",
    "set_aside",
    "search_rows",
    "search_fts",
    "people",
    "provisional_numbers",
];

impl Store {
    /// Work not yet acknowledged by a server, counted by document and kind.
    pub fn unsynced_work(&self) -> Result<UnsyncedWork> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.doc, count(*), (SELECT kind FROM docs d WHERE d.id = u.doc)
             FROM (SELECT doc FROM outbox UNION ALL SELECT doc FROM set_aside) u GROUP BY u.doc",
        )?;
        let mut w = UnsyncedWork::default();
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?))
        })?;
        for row in rows {
            let (n, kind) = row?;
            w.changes += u64::try_from(n).unwrap_or(0);
            w.documents += 1;
            match kind.as_deref() {
                Some("household") => w.households += 1,
                Some("record") => w.records += 1,
                Some("task") => w.tasks += 1,
                _ => {}
            }
        }
        Ok(w)
    }

    /// Whether the store holds any document or unsynced change.
    pub fn holds_data(&self) -> Result<bool> {
        let docs: bool = self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM docs)", [], |r| r.get(0))?;
        Ok(docs || !self.unsynced_work()?.is_empty())
    }

    /// Whose data the store holds: the identity of its last enrollment, or, for a store
    /// enrolled before this was recorded, the enrolled identity it acts as. `None` when it
    /// was never enrolled.
    pub fn data_owner(&self) -> Result<Option<DataOwner>> {
        if let Some(o) = meta_json::<DataOwner>(&self.conn, K_DATA_OWNER)? {
            return Ok(Some(o));
        }
        Ok(self.credentials()?.map(|c| DataOwner {
            device: c.device,
            user: c.user,
        }))
    }

    /// Acts as `actor` from now on (its Automerge actor is `actor.device`). Cached
    /// documents carry the old actor, so the cache is dropped.
    pub(crate) fn rekey(&mut self, actor: Actor) {
        if self.actor != actor {
            self.actor = actor;
            self.cache.clear();
        }
    }

    /// An enrolled store acts as the device and user it was enrolled as, whatever actor the
    /// app opened it with (the server pins changes to the enrolled device). Called by the
    /// bindings after opening.
    pub fn adopt_enrolled_identity(&mut self) -> Result<()> {
        let Some(creds) = self.credentials()? else {
            return Ok(());
        };
        let role = self.enrolled_role(self.actor.role)?;
        let actor = Actor::new(&creds.user, &creds.user_name, role, &creds.device)?;
        self.rekey(actor);
        Ok(())
    }

    fn enrolled_role(&self, fallback: Role) -> Result<Role> {
        Ok(self
            .grants()?
            .first()
            .and_then(|g| g.role.parse::<Role>().ok())
            .unwrap_or(fallback))
    }

    /// Saves an enrollment answer: credentials for `server_url`, the granted grids, the
    /// server's time as the clock's anchor, and the new identity, which the store acts as
    /// from now on. A store holding another user's data is refused: that is a handover,
    /// which erases first ([`crate::sync::enroll_store`] decides it).
    pub fn save_enrollment(
        &mut self,
        server_url: &str,
        enrolled: &proto::EnrollResponse,
    ) -> Result<()> {
        if self.holds_data()?
            && let Some(owner) = self.data_owner()?.or_else(|| {
                Some(DataOwner {
                    device: self.actor.device.clone(),
                    user: self.actor.user.clone(),
                })
            })
            && owner.user != enrolled.user
        {
            return Err(Error::invalid(
                "store",
                "this store holds another user's data: enroll through `enroll_store` (a handover erases it once it is synced)",
            ));
        }
        let role = enrolled
            .grants
            .first()
            .and_then(|g| g.role.parse::<Role>().ok())
            .unwrap_or(self.actor.role);
        let actor = Actor::new(&enrolled.user, &enrolled.user_name, role, &enrolled.device)?;
        self.rekey(actor);
        self.save_enrollment_for_actor(server_url, enrolled)?;
        meta_put(
            &self.conn,
            K_DATA_OWNER,
            &to_json(&DataOwner {
                device: enrolled.device.clone(),
                user: enrolled.user.clone(),
            })?,
        )
    }

    /// Deletes every document, the outbox and everything learnt from the server
    /// (credentials, grants, cursors, status), in one transaction, then compacts the file so
    /// that the deleted pages do not linger. The clock stays (it never goes back). Returns
    /// how many documents were erased.
    pub fn erase_all(&mut self) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let docs: i64 = tx.query_row("SELECT count(*) FROM docs", [], |r| r.get(0))?;
        for t in DATA_TABLES {
            tx.execute(&format!("DELETE FROM {t}"), [])?;
        }
        // The compression dictionary was trained on residents' documents.
        tx.execute(
            "DELETE FROM meta WHERE key LIKE 'sync.%' OR key = ?1 OR key = 'zstd_dict'",
            [K_DATA_OWNER],
        )?;
        tx.commit()?;
        self.cache.clear();
        self.codec = super::codec::Codec::default();
        self.conn.execute_batch("VACUUM")?;
        Ok(u64::try_from(docs).unwrap_or(0))
    }

    /// Signs out: forgets the credentials and erases the residents' data from the phone.
    /// With unsynced work, refused ([`Error::UnsyncedWork`], nothing changed) unless
    /// `force`, which deletes that work too; the result says what was deleted.
    pub fn sign_out(&mut self, force: bool) -> Result<SignedOut> {
        let unsynced = self.unsynced_work()?;
        if !unsynced.is_empty() && !force {
            return Err(unsynced.refusal(
                "signing out",
                "sync first, or sign out with force to delete it",
            ));
        }
        let documents = self.erase_all()?;
        Ok(SignedOut {
            documents,
            unsynced,
        })
    }

    /// The device the store's data was written as, to name in an enrollment request
    /// (`previous_device`): `None` when the store holds nothing.
    pub(crate) fn previous_device(&self) -> Result<Option<String>> {
        if !self.holds_data()? {
            return Ok(None);
        }
        Ok(Some(match self.data_owner()? {
            Some(o) => o.device,
            None => self.actor.device.clone(),
        }))
    }
}
