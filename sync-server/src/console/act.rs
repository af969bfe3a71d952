//! The console's task actions (派单, 督单, 问单, level and deadline changes, escalation,
//! cancel, notes, a rating given at the station): each is an Automerge change authored by
//! the staff member on their **console device** and pushed through exactly the checks of a
//! phone's push ([`crate::http::push_checked`]). Phones see it after their next sync, like
//! any other change.
//!
//! - The console device of a user is a device like a phone's, registered the first time the
//!   user acts, named 站点控制台, listed and revocable on the administration page. Its id is
//!   derived from the user id (`console-` + 20 hex digits of SHA-256), so it never collides
//!   with a phone's (those are `d` + random hex, chosen by the server).
//! - The event is written by [`xiuhua_core::task_act::record`], the phone's own rule: the
//!   console cannot write anything a phone could not.
//! - An escalation is first checked and recorded by [`crate::http::escalate_task`], as a
//!   phone's `/v1/escalate` is, then pushed.

use automerge::AutoCommit;
use sha2::{Digest, Sha256};
use xiuhua_core::doc::{self, DocKind};
use xiuhua_core::hlc::Hlc;
use xiuhua_core::model::{Actor, TaskAction};
use xiuhua_core::sync::proto::{DocChanges, PushRequest};
use xiuhua_core::task_act;
use xiuhua_core::workflow::TaskView;

use crate::access::Caller;
use crate::auth;
use crate::error::ApiError;
use crate::http::AppState;
use crate::storage::{DeviceStanding, EnrollOutcome, NewDevice};

/// The console device's name, as the administration page lists it.
pub const CONSOLE_DEVICE_NAME: &str = "站点控制台";

/// Why a console action was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActError {
    /// A field of the form is wrong (400).
    Invalid(String),
    /// The task as it stands does not allow it, or a concurrent change won (409).
    Refused(String),
    /// No such task, or not one of the user's grids (the one 404).
    NotFound,
    /// The user's console device was revoked (403): an administrator must act.
    DeviceRevoked,
    /// The server's fault (500); logged.
    Internal(String),
}

impl ActError {
    fn from_api(e: ApiError) -> ActError {
        let m = e.body.message;
        match e.status.as_u16() {
            404 => ActError::NotFound,
            403 | 409 => ActError::Refused(m),
            s if (400..500).contains(&s) => ActError::Invalid(m),
            _ => ActError::Internal(m),
        }
    }

    fn from_core(e: xiuhua_core::Error) -> ActError {
        match e {
            xiuhua_core::Error::Refused(m) => ActError::Refused(m),
            xiuhua_core::Error::Invalid { .. } => ActError::Invalid(e.to_string()),
            xiuhua_core::Error::NotFound(_) => ActError::NotFound,
            other => ActError::Internal(other.to_string()),
        }
    }
}

/// The id of `user`'s console device.
pub fn console_device_id(user: &str) -> String {
    let h = auth::hex(&Sha256::digest(user.as_bytes()));
    format!("console-{}", &h[..20])
}

/// `user` acting through their console device: registered on first use (with a refresh
/// token nobody holds, so it can only ever act from this server's console).
pub async fn console_caller(app: &AppState, user: &str, now_ms: i64) -> Result<Caller, ActError> {
    let device = console_device_id(user);
    let storage = &app.storage;
    let internal = |e: crate::error::StoreError| ActError::Internal(e.to_string());
    for _ in 0..2 {
        match storage
            .device_standing(&device, user, now_ms)
            .await
            .map_err(internal)?
        {
            DeviceStanding::Active(c) => return Ok(c),
            DeviceStanding::Reset | DeviceStanding::Revoked { .. } => {
                return Err(ActError::DeviceRevoked);
            }
            DeviceStanding::Unknown => {}
        }
        let code = crate::admin::enroll_code(&**storage, &app.secret, user)
            .await
            .map_err(internal)?;
        let code_hash = app
            .secret
            .code_hash(&code)
            .ok_or_else(|| ActError::Internal("generated code is malformed".into()))?;
        let unused = auth::new_refresh_token().map_err(|e| ActError::Internal(e.to_string()))?;
        let refresh_hash = auth::refresh_hash(&unused);
        let new = NewDevice {
            id: &device,
            name: CONSOLE_DEVICE_NAME,
            refresh_hash: &refresh_hash,
            refresh_expires_ms: now_ms,
        };
        // Anything but `Enrolled`: registered concurrently by another request of the same
        // user; the next look finds it.
        if let EnrollOutcome::Enrolled(_) = storage
            .enroll_device(&code_hash, &new, None, now_ms)
            .await
            .map_err(internal)?
        {
            tracing::info!(device, user, "console device registered");
        }
    }
    Err(ActError::Internal(format!(
        "the console device of {user} could not be registered"
    )))
}

/// The HLC of a new event at `now_ms`: after every event the task holds, so that the
/// console's clock never places its event before one it has seen.
pub fn next_hlc(view: &TaskView, now_ms: i64) -> Hlc {
    let now = Hlc::new(u64::try_from(now_ms).unwrap_or(0), 0);
    let latest = view.events.iter().map(|f| f.event.hlc).max().unwrap_or(0);
    if now.as_i64() > latest {
        now
    } else {
        Hlc::from_i64(latest.saturating_add(1)).unwrap_or(now)
    }
}

/// What [`act`] did.
#[derive(Debug, Clone)]
pub struct Acted {
    /// The task's fold after the action.
    pub view: TaskView,
    /// The grid the task is in.
    pub grid: String,
}

/// Records `action` on `task` as `user` (role: their grant on the task's grid) and pushes
/// it. Nothing is stored unless every check passes.
pub async fn act(
    app: &AppState,
    user: &str,
    task: &str,
    action: TaskAction,
    now_ms: i64,
) -> Result<Acted, ActError> {
    task_act::validate(&action, now_ms).map_err(ActError::from_core)?;
    let caller = console_caller(app, user, now_ms).await?;
    let (meta, bytes) = app
        .storage
        .doc(task)
        .await
        .map_err(|e| ActError::from_api(e.into()))?
        .ok_or(ActError::NotFound)?;
    if meta.kind != DocKind::Task {
        return Err(ActError::NotFound);
    }
    let grant = caller.grant(&meta.grid).ok_or(ActError::NotFound)?;
    let actor = Actor {
        user: caller.user.clone(),
        name: caller.user_name.clone(),
        role: grant.role,
        device: caller.device.clone(),
    };
    let id = task.to_string();
    let act_for = action.clone();
    let (change, view) = app
        .work("a console action", move || {
            Ok(record(&bytes, &id, &actor, &act_for, now_ms))
        })
        .await
        .map_err(ActError::from_api)??;
    if let TaskAction::Escalate { tier, unit } = &action {
        crate::http::escalate_task(&*app.storage, &caller, &meta, *tier, unit.as_deref())
            .await
            .map_err(ActError::from_api)?;
    }
    let req = PushRequest {
        docs: vec![DocChanges {
            doc: task.to_string(),
            changes: vec![serde_bytes::ByteBuf::from(change)],
        }],
    };
    crate::http::push_checked(app, &caller, req)
        .await
        .map_err(ActError::from_api)?;
    Ok(Acted {
        view,
        grid: meta.grid,
    })
}

/// The change that records `action` in the stored task `saved`, and the task's new fold.
fn record(
    saved: &[u8],
    id: &str,
    actor: &Actor,
    action: &TaskAction,
    now_ms: i64,
) -> Result<(Vec<u8>, TaskView), ActError> {
    let mut d: AutoCommit = doc::load_doc(saved)
        .map_err(|e| ActError::Internal(format!("stored task {id} does not load: {e}")))?;
    d.set_actor(doc::actor_id(&actor.device));
    let before: xiuhua_core::model::Task =
        autosurgeon::hydrate(&d).map_err(|e| ActError::Internal(format!("task {id}: {e}")))?;
    let hlc = next_hlc(&xiuhua_core::workflow::fold(before.events.values()), now_ms);
    let (_, view) =
        task_act::record(&mut d, id, actor, hlc, action).map_err(ActError::from_core)?;
    task_act::commit(&mut d, actor, hlc, &task_act::change_note(action))
        .ok_or_else(|| ActError::Internal("the action changed nothing".into()))?;
    let change = d
        .get_last_local_change()
        .ok_or_else(|| ActError::Internal("no change after the action".into()))?;
    Ok((change.raw_bytes().to_vec(), view))
}
