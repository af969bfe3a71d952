//! The HTTP layer: `/v1/*` (bodies per `xiuhua_core::sync::proto`), `/healthz`, `/metrics`.
//!
//! Every `/v1` request must carry `x-xiuhua-protocol: 1` (else `426`). Authenticated
//! requests carry `Authorization: Bearer <access token>`. Every answer to an authenticated
//! request names the grids the device must purge: in [`ErrorBody::purge_grids`] for errors,
//! and in the [`PURGE_HEADER`] header (comma-separated grid ids) on every answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::AutoCommit;
use automerge::sync::{Message, State as SyncState, SyncDoc};
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use tokio::sync::Notify;
use xiuhua_core::doc::DocKind;
use xiuhua_core::model::Tier;
use xiuhua_core::store::PROJECTION_VERSION;
use xiuhua_core::sync::proto::{self, *};

use crate::access::{self, Caller, Scope};
use crate::auth::{self, Secret};
use crate::error::{ApiError, Refusal};
use crate::metrics::Metrics;
use crate::storage::{DeviceStanding, RefreshOutcome, Storage};
use crate::{ingest, now_ms};

/// Header naming the grids a device must purge, comma-separated.
pub const PURGE_HEADER: &str = "x-xiuhua-purge-grids";
/// Longest long poll.
pub const MAX_WAIT_MS: u32 = 30_000;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest (compressed) request body.
    pub max_body_bytes: usize,
    pub access_ttl_ms: i64,
    pub max_push_changes: usize,
    pub max_pull_limit: u32,
}

impl Limits {
    pub fn from_config(c: &crate::Config) -> Limits {
        Limits {
            max_body_bytes: c.max_body_bytes,
            access_ttl_ms: i64::try_from(c.access_ttl_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            max_push_changes: c.max_push_changes,
            max_pull_limit: c.max_pull_limit,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&crate::Config::default())
    }
}

/// Wakes long polls of a grid when a push stores changes there.
#[derive(Debug, Default)]
pub struct Notifier {
    grids: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Notifier {
    pub fn get(&self, grid: &str) -> Arc<Notify> {
        let mut m = self
            .grids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(grid.to_string()).or_default().clone()
    }
    pub fn notify(&self, grid: &str) {
        let m = self
            .grids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get(grid) {
            n.notify_waiters();
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub storage: Arc<dyn Storage>,
    pub secret: Secret,
    pub metrics: Arc<Metrics>,
    pub notifier: Arc<Notifier>,
    pub limits: Limits,
}

impl AppState {
    pub fn new(storage: Arc<dyn Storage>, secret: Secret, limits: Limits) -> AppState {
        AppState {
            storage,
            secret,
            metrics: Arc::default(),
            notifier: Arc::default(),
            limits,
        }
    }
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/enroll", post(enroll))
        .route("/v1/refresh", post(refresh))
        .route("/v1/push", post(push))
        .route("/v1/pull", post(pull))
        .route("/v1/bootstrap", post(bootstrap))
        .route("/v1/repair", post(repair))
        .route("/v1/escalate", post(escalate))
        .route_layer(middleware::from_fn(check_protocol));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(v1)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let bytes_in = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = Instant::now();
    let resp = next.run(req).await;
    let bytes_out = resp.body().size_hint().exact().unwrap_or(0);
    let status = resp.status().as_u16();
    st.metrics.request(&route, status, bytes_in, bytes_out);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(route, status, ms, bytes_in, bytes_out, "request");
    } else if status >= 400 {
        tracing::info!(route, status, ms, bytes_in, bytes_out, "request refused");
    } else {
        tracing::debug!(route, status, ms, bytes_in, bytes_out, "request");
    }
    resp
}

async fn check_protocol(req: Request, next: Next) -> Response {
    let v = req
        .headers()
        .get(proto::PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let want = proto::PROTOCOL_VERSION.to_string();
    if v != Some(want.as_str()) {
        let msg = match v {
            None => format!(
                "missing {} header; this server speaks protocol {want}",
                proto::PROTOCOL_HEADER
            ),
            Some(v) => format!(
                "protocol {v:?} is not supported; this server speaks protocol {want}: update the app"
            ),
        };
        return ApiError::new(StatusCode::UPGRADE_REQUIRED, "unsupported_protocol", msg)
            .into_response();
    }
    next.run(req).await
}

async fn healthz(State(st): State<AppState>) -> Response {
    match st.storage.health().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

// ----- bodies -----

const INLINE_DECODE: usize = 256 * 1024;

async fn read_body<T: DeserializeOwned + Send + 'static>(
    st: &AppState,
    body: Body,
) -> Result<T, ApiError> {
    let limit = st.limits.max_body_bytes;
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::from(Refusal::too_large(format!(
            "request body larger than {limit} bytes; send smaller batches"
        )))
    })?;
    let decoded = if bytes.len() <= INLINE_DECODE {
        proto::decode::<T>(&bytes)
    } else {
        tokio::task::spawn_blocking(move || proto::decode::<T>(&bytes))
            .await
            .map_err(|e| ApiError::internal(format!("decoding failed: {e}")))?
    };
    decoded.map_err(|e| match e {
        proto::WireError::TooLarge => Refusal::too_large(e.to_string()).into(),
        other => ApiError::bad_request(format!("malformed request body: {other}")),
    })
}

fn respond(bytes: Vec<u8>, caller: Option<&Caller>) -> Response {
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(proto::CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&proto::PROTOCOL_VERSION.to_string()) {
        h.insert(proto::PROTOCOL_HEADER, v);
    }
    if let Some(c) = caller {
        let purge = c.purge_grids();
        if !purge.is_empty()
            && let Ok(v) = HeaderValue::from_str(&purge.join(","))
        {
            h.insert(PURGE_HEADER, v);
        }
    }
    resp
}

/// A success body plus the optional `purge_grids` field (ADR 0001: every reply names the
/// grids to purge). Typed clients ignore the extra field; the field is left out when empty.
#[derive(Serialize)]
struct WithPurge<'a, T: Serialize> {
    #[serde(flatten)]
    body: &'a T,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    purge_grids: &'a [String],
}

fn encode_with_purge<T: Serialize>(value: &T, purge: &[String]) -> Vec<u8> {
    if purge.is_empty() {
        proto::encode(value)
    } else {
        proto::encode(&WithPurge {
            body: value,
            purge_grids: purge,
        })
    }
}

fn wire<T: Serialize>(value: &T, caller: Option<&Caller>) -> Response {
    let purge = caller.map(Caller::purge_grids).unwrap_or_default();
    respond(encode_with_purge(value, &purge), caller)
}

// ----- credentials -----

async fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::from(Refusal::unauthorized(
                "missing Authorization: Bearer <access token>",
            ))
        })?;
    let now = now_ms();
    let (device, user) = st.secret.verify_access(token.trim(), now)?;
    match st.storage.device_standing(&device, &user, now).await? {
        DeviceStanding::Unknown => {
            Err(Refusal::unauthorized(format!("device {device} is not enrolled")).into())
        }
        DeviceStanding::Revoked { held_grids } => Err(ApiError::from(Refusal::unauthorized(
            format!("device {device} has been revoked: delete its data"),
        ))
        .with_purge(&held_grids)),
        DeviceStanding::Active(c) => Ok(c),
    }
}

fn tokens(st: &AppState, device: &str, user: &str, refresh_token: String) -> TokenResponse {
    let expires = now_ms().saturating_add(st.limits.access_ttl_ms);
    TokenResponse {
        access_token: st.secret.access_token(device, user, expires),
        access_expires_ms: expires,
        refresh_token,
    }
}

fn internal<E: std::fmt::Display>(e: E) -> ApiError {
    tracing::error!(error = %e, "internal error");
    ApiError::internal("internal error; see the server log")
}

async fn enroll(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: EnrollRequest = read_body(&st, body).await?;
    let name = req.device_name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "device_name must be 1 to 64 characters without control characters",
        ));
    }
    let code_hash = st.secret.code_hash(&req.code).ok_or_else(|| {
        ApiError::from(Refusal::unauthorized(
            "an enrollment code is 8 digits, e.g. 1234-5678",
        ))
    })?;
    let device = auth::new_device_id().map_err(internal)?;
    let refresh = auth::new_refresh_token().map_err(internal)?;
    let now = now_ms();
    let enrolled = st
        .storage
        .enroll(
            &code_hash,
            &device,
            name,
            &auth::refresh_hash(&refresh),
            now + auth::REFRESH_TTL_MS,
            now,
        )
        .await?
        .ok_or_else(|| {
            ApiError::from(Refusal::unauthorized(
                "unknown, used or expired enrollment code; ask the station for a new one",
            ))
        })?;
    Metrics::add(&st.metrics.enrollments, 1);
    tracing::info!(device, user = enrolled.user, "device enrolled");
    let resp = EnrollResponse {
        server_time_ms: now_ms(),
        tokens: tokens(&st, &device, &enrolled.user, refresh),
        device,
        user: enrolled.user,
        user_name: enrolled.user_name,
        grants: enrolled
            .grants
            .into_iter()
            .map(|g| Grant {
                grid: g.grid,
                role: g.role.as_str().to_string(),
                buildings: g.buildings,
            })
            .collect(),
    };
    Ok(wire(&resp, None))
}

async fn refresh(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: RefreshRequest = read_body(&st, body).await?;
    let new = auth::new_refresh_token().map_err(internal)?;
    let now = now_ms();
    match st
        .storage
        .refresh(
            &auth::refresh_hash(req.refresh_token.trim()),
            &auth::refresh_hash(&new),
            now + auth::REFRESH_TTL_MS,
            now,
        )
        .await?
    {
        RefreshOutcome::Rotated { device, user } => {
            Ok(wire(&tokens(&st, &device, &user, new), None))
        }
        RefreshOutcome::Refused(why) => Err(Refusal::unauthorized(why).into()),
        RefreshOutcome::Revoked { held_grids } => Err(ApiError::from(Refusal::unauthorized(
            "this device has been revoked: delete its data",
        ))
        .with_purge(&held_grids)),
    }
}

// ----- sync -----

async fn push(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = authenticate(&st, &headers).await?;
    let purge = caller.purge_grids();
    let result = async {
        let req: PushRequest = read_body(&st, body).await?;
        let (device, max) = (caller.device.clone(), st.limits.max_push_changes);
        let parsed = tokio::task::spawn_blocking(move || ingest::parse(&device, req, max))
            .await
            .map_err(internal)??;
        Ok::<_, ApiError>(st.storage.push(&caller, parsed).await?)
    }
    .await;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if e.status.is_client_error() {
                Metrics::add(&st.metrics.writes_refused, 1);
                tracing::info!(
                    device = caller.device,
                    user = caller.user,
                    status = e.status.as_u16(),
                    reason = e.body.message,
                    "push refused"
                );
            }
            return Err(e.with_purge(&purge));
        }
    };
    Metrics::add(&st.metrics.changes_stored, outcome.stored);
    Metrics::add(&st.metrics.duplicates, outcome.duplicates);
    if outcome.stored > 0 {
        for (grid, _) in &outcome.grid_seqs {
            st.notifier.notify(grid);
        }
    }
    let resp = PushResponse {
        server_time_ms: now_ms(),
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        grid_seqs: outcome
            .grid_seqs
            .into_iter()
            .map(|(grid, seq)| GridSeq { grid, seq })
            .collect(),
    };
    Ok(wire(&resp, Some(&caller)))
}

/// The read scope of a grid, refusing with `purge` when the device held it.
fn scope_for(caller: &Caller, grid: &str) -> Result<Scope, ApiError> {
    caller.read_scope(grid).map_err(|r| {
        let purge = caller.purge_grids();
        let mut e = ApiError::from(r).with_purge(&purge);
        if purge.iter().any(|g| g == grid) {
            e.body.code = "purge".into();
            e.body.message = format!(
                "grid {grid} is no longer granted to user {}: delete its data",
                caller.user
            );
        }
        e
    })
}

/// What a grid read (pull, bootstrap) starts with: the caller, the grids it must purge, the
/// decoded request, and the caller's read scope in the request's grid, recorded as held.
struct GridRead<T> {
    caller: Caller,
    purge: Vec<String>,
    req: T,
    scope: Scope,
}

async fn grid_read<T: DeserializeOwned + Send + 'static>(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    grid_of: fn(&T) -> &str,
) -> Result<GridRead<T>, ApiError> {
    let caller = authenticate(st, headers).await?;
    let purge = caller.purge_grids();
    let req: T = read_body(st, body)
        .await
        .map_err(|e| e.with_purge(&purge))?;
    let grid = grid_of(&req);
    let scope = scope_for(&caller, grid)?;
    hold(st, &caller, grid)
        .await
        .map_err(|e| e.with_purge(&purge))?;
    Ok(GridRead {
        caller,
        purge,
        req,
        scope,
    })
}

async fn hold(st: &AppState, caller: &Caller, grid: &str) -> Result<(), ApiError> {
    if !caller.held_grids.iter().any(|g| g == grid) {
        st.storage.mark_held(&caller.device, grid).await?;
    }
    Ok(())
}

async fn pull(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let GridRead {
        caller,
        purge,
        req,
        scope,
    } = grid_read::<PullRequest>(&st, &headers, body, |r| &r.grid).await?;
    let max = st.limits.max_pull_limit;
    let limit = if req.limit == 0 {
        max
    } else {
        req.limit.min(max)
    };
    let notify = st.notifier.get(&req.grid);
    let notified = notify.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let mut page = st
        .storage
        .pull(&req.grid, req.since, limit, &scope)
        .await
        .map_err(|e| ApiError::from(e).with_purge(&purge))?;
    let wait = req.wait_ms.min(MAX_WAIT_MS);
    if page.changes.is_empty()
        && !page.more
        && wait > 0
        && tokio::time::timeout(Duration::from_millis(u64::from(wait)), notified)
            .await
            .is_ok()
    {
        page = st
            .storage
            .pull(&req.grid, req.since, limit, &scope)
            .await
            .map_err(|e| ApiError::from(e).with_purge(&purge))?;
    }
    // The device's own changes are not sent back to it: it has them (the cursor still moves
    // past them). An undecodable stored change is sent as it is.
    let own = xiuhua_core::doc::actor_id(&caller.device);
    page.changes.retain(|(_, _, bytes)| {
        automerge::Change::try_from(bytes.as_slice()).map_or(true, |c| *c.actor_id() != own)
    });
    Metrics::add(&st.metrics.pulls, 1);
    Metrics::add(&st.metrics.pulled_changes, page.changes.len() as u64);
    let resp = PullResponse {
        server_time_ms: now_ms(),
        grid: req.grid,
        changes: page
            .changes
            .into_iter()
            .map(|(seq, doc, change)| PulledChange {
                seq,
                doc,
                change: ByteBuf::from(change),
            })
            .collect(),
        next: page.next,
        more: page.more,
    };
    Ok(wire(&resp, Some(&caller)))
}

async fn bootstrap(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let GridRead {
        caller,
        purge,
        req,
        scope,
    } = grid_read::<BootstrapRequest>(&st, &headers, body, |r| &r.grid).await?;
    let snap = st
        .storage
        .bootstrap(&req.grid, &scope, req.after.as_deref(), req.limit)
        .await
        .map_err(|e| ApiError::from(e).with_purge(&purge))?;
    let grid = req.grid;
    let purge_in_body = purge.clone();
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mut docs = Vec::with_capacity(snap.docs.len());
        for d in snap.docs {
            let rows =
                rmp_serde::from_slice(&d.rows).map_err(|e| format!("rows of {}: {e}", d.id))?;
            docs.push(BundleDoc {
                // The saved bytes carry the document's heads; 32 random bytes per document
                // do not compress (a tenth of the bundle), so they are not sent twice.
                heads: Vec::new(),
                bytes: ByteBuf::from(d.bytes),
                id: d.id,
                kind: d.kind,
                rows,
            });
        }
        let bundle = Bundle {
            server_time_ms: now_ms(),
            grid,
            cursor: snap.cursor,
            projection_version: PROJECTION_VERSION,
            docs,
            more: snap.more,
        };
        Ok(encode_with_purge(&bundle, &purge_in_body))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Metrics::add(&st.metrics.bootstraps, 1);
    Ok(respond(bytes, Some(&caller)))
}

/// Repair is read-only on the server: it answers with the changes the client lacks and
/// ignores changes carried in the client's message (the client pushes its own changes
/// through `/v1/push`, where they are checked). The server's sync state is fresh every
/// request and flagged read-only, so an Automerge client does not send changes.
async fn repair(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = authenticate(&st, &headers).await?;
    let purge = caller.purge_grids();
    let req: RepairRequest = read_body(&st, body)
        .await
        .map_err(|e| e.with_purge(&purge))?;
    let Some((meta, bytes)) = st
        .storage
        .doc(&req.doc)
        .await
        .map_err(|e| ApiError::from(e).with_purge(&purge))?
    else {
        return Err(ApiError::from(Refusal::not_found(format!(
            "document {} is not on the server; push it",
            req.doc
        )))
        .with_purge(&purge));
    };
    let scope = scope_for(&caller, &meta.grid)?;
    if !scope.covers(meta.building.as_deref()) {
        return Err(ApiError::from(Refusal::forbidden(format!(
            "document {} is outside user {}'s buildings",
            meta.id, caller.user
        )))
        .with_purge(&purge));
    }
    let doc_id = meta.id.clone();
    let reply = tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, ApiError> {
        let mut doc = AutoCommit::load(&bytes).map_err(internal)?;
        let mut msg = Message::decode(&req.message).map_err(|e| {
            ApiError::bad_request(format!(
                "document {doc_id}: not an Automerge sync message: {e}"
            ))
        })?;
        msg.changes = automerge::sync::ChunkList::empty();
        msg.need.retain(|h| doc.get_change_by_hash(h).is_some());
        let heads = doc.get_heads();
        if msg.heads == heads && msg.need.is_empty() {
            return Ok(None);
        }
        let mut state = SyncState::new_read_only();
        doc.sync()
            .receive_sync_message(&mut state, msg)
            .map_err(|e| {
                ApiError::bad_request(format!("document {doc_id}: sync message refused: {e}"))
            })?;
        Ok(doc
            .sync()
            .generate_sync_message(&mut state)
            .map(Message::encode))
    })
    .await
    .map_err(internal)??;
    Metrics::add(&st.metrics.repairs, 1);
    Ok(wire(
        &RepairResponse {
            message: reply.map(ByteBuf::from),
        },
        Some(&caller),
    ))
}

async fn escalate(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = authenticate(&st, &headers).await?;
    let purge = caller.purge_grids();
    let result = async {
        let req: EscalateRequest = read_body(&st, body).await?;
        let to = Tier::parse(&req.tier).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let Some((meta, _)) = st.storage.doc(&req.task).await? else {
            return Err(Refusal::not_found(format!("task {} is not on the server; push it first", req.task)).into());
        };
        if meta.kind != DocKind::Task {
            return Err(ApiError::bad_request(format!("{} is a {}, not a task", meta.id, meta.kind.as_str())));
        }
        let grant = caller
            .grant(&meta.grid)
            .ok_or_else(|| Refusal::forbidden(format!("user {} has no grant on grid {}", caller.user, meta.grid)))?;
        access::check_escalation(grant.role, meta.tier, to)?;
        let unit = req.unit.as_deref().map(str::trim).filter(|u| !u.is_empty());
        if to == Tier::LinkedUnit && unit.is_none() {
            return Err(ApiError::bad_request("escalating to a linked unit needs the unit (物业, 建设, 执法 or a co-building unit)"));
        }
        if unit.is_some_and(|u| u.chars().count() > 64) {
            return Err(ApiError::bad_request("unit longer than 64 characters"));
        }
        if !st.storage.set_tier(&meta.id, meta.tier, to, unit).await? {
            return Err(Refusal::conflict(format!("task {} changed tier concurrently; retry", meta.id)).into());
        }
        tracing::info!(task = meta.id, from = %meta.tier, to = %to, user = caller.user, "task escalated");
        Ok(())
    }
    .await;
    result.map_err(|e| e.with_purge(&purge))?;
    Metrics::add(&st.metrics.escalations, 1);
    Ok(wire(
        &EscalateResponse {
            server_time_ms: now_ms(),
        },
        Some(&caller),
    ))
}
