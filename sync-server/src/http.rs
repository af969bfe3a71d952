//! The HTTP layer: `/v1/*` (bodies per `xiuhua_core::sync::proto`), `/healthz`, `/metrics`.
//!
//! Every `/v1` request must carry `x-xiuhua-protocol: 1` (else `426`). Authenticated
//! requests carry `Authorization: Bearer <access token>`. Every answer to an authenticated
//! request names the grids the device must purge: in [`ErrorBody::purge_grids`] for errors,
//! and in the [`PURGE_HEADER`] header (comma-separated grid ids) on every answer.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::{ChunkList, Message, MessageVersion};
use automerge::{Automerge, ChangeHash, ReadDoc};
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use tokio::sync::{Notify, Semaphore};
use xiuhua_core::doc::DocKind;
use xiuhua_core::model::Tier;
use xiuhua_core::store::PROJECTION_VERSION;
use xiuhua_core::sync::proto::{self, *};

use crate::access::{self, Caller, Scope};
use crate::auth::{self, Secret};
use crate::credentials::{self, CredentialRefusal};
use crate::edge::{EnrollGuard, LongPolls};
use crate::error::{ApiError, Refusal};
use crate::metrics::Metrics;
use crate::storage::{DeviceStanding, EnrollOutcome, NewDevice, RefreshOutcome, Storage};
use crate::{ingest, now_ms, numbers};

/// Header naming the grids a device must purge, comma-separated.
pub const PURGE_HEADER: &str = "x-xiuhua-purge-grids";
/// Longest long poll.
pub const MAX_WAIT_MS: u32 = 30_000;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest (compressed) push body.
    pub max_body_bytes: usize,
    pub access_ttl_ms: i64,
    pub max_push_changes: usize,
    pub max_pull_limit: u32,
    /// Longest wait between two reads of a request body.
    pub body_timeout: Duration,
    pub max_long_polls_per_device: usize,
    /// Request bodies decoded (and pushes checked, repairs computed) at once.
    pub decode_workers: usize,
    pub enroll_per_ip_per_minute: u32,
    pub enroll_per_minute: u32,
    /// Each device's daily push quota.
    pub quota: crate::storage::Quota,
    /// What one change and one document may hold ([`ingest::Caps`]).
    pub ingest: ingest::Caps,
}

impl Limits {
    pub fn from_config(c: &crate::Config) -> Limits {
        Limits {
            max_body_bytes: c.max_body_bytes,
            access_ttl_ms: i64::try_from(c.access_ttl_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            max_push_changes: c.max_push_changes,
            max_pull_limit: c.max_pull_limit,
            body_timeout: Duration::from_secs(c.body_timeout_secs),
            max_long_polls_per_device: c.max_long_polls_per_device,
            decode_workers: c.decode_workers,
            enroll_per_ip_per_minute: c.enroll_per_ip_per_minute,
            enroll_per_minute: c.enroll_per_minute,
            quota: crate::storage::Quota {
                daily_bytes: c.device_daily_bytes,
                daily_changes: c.device_daily_changes,
            },
            ingest: c.ingest_caps(),
        }
    }

    /// What one endpoint's body may take: compressed on the wire, then decompressed and
    /// in MessagePack items (see [`proto::decode_within`]).
    pub fn body_cap(&self, e: Endpoint) -> (usize, proto::DecodeLimits) {
        let small = |bytes: usize| {
            (
                bytes,
                proto::DecodeLimits {
                    max_bytes: bytes,
                    max_items: 64,
                },
            )
        };
        match e {
            Endpoint::Credentials => small(SMALL_BODY_BYTES),
            Endpoint::Read => small(READ_BODY_BYTES),
            Endpoint::Repair => (
                REPAIR_BODY_BYTES,
                proto::DecodeLimits {
                    max_bytes: 2 * REPAIR_BODY_BYTES,
                    max_items: 64,
                },
            ),
            Endpoint::Push => (
                self.max_body_bytes,
                proto::DecodeLimits {
                    max_bytes: self
                        .max_body_bytes
                        .saturating_mul(PUSH_INFLATE_RATIO)
                        .min(proto::MAX_BODY_BYTES),
                    // A document is 5 items (map, 2 keys, id, list), a change 1.
                    max_items: self.max_push_changes.saturating_mul(6).saturating_add(64),
                },
            ),
        }
    }
}

/// The body classes of the endpoints, each with its own caps ([`Limits::body_cap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/enroll`, `/v1/refresh`.
    Credentials,
    /// `/v1/pull`, `/v1/bootstrap`, `/v1/escalate`.
    Read,
    /// `/v1/repair`.
    Repair,
    /// `/v1/push`.
    Push,
}

/// Largest enroll and refresh body (compressed and decompressed).
pub const SMALL_BODY_BYTES: usize = 4 * 1024;
/// Largest pull, bootstrap and escalate body.
pub const READ_BODY_BYTES: usize = 16 * 1024;
/// Largest (compressed) repair body; twice that decompressed.
pub const REPAIR_BODY_BYTES: usize = 2 * 1024 * 1024;
/// A push may decompress to this many times its compressed size limit (at most
/// [`proto::MAX_BODY_BYTES`]).
pub const PUSH_INFLATE_RATIO: usize = 4;

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
    /// Permits for CPU-heavy work on request bodies ([`Limits::decode_workers`]).
    pub work: Arc<Semaphore>,
    pub enroll_guard: Arc<EnrollGuard>,
    pub long_polls: Arc<LongPolls>,
}

impl AppState {
    pub fn new(storage: Arc<dyn Storage>, secret: Secret, limits: Limits) -> AppState {
        AppState {
            storage,
            secret,
            metrics: Arc::default(),
            notifier: Arc::default(),
            work: Arc::new(Semaphore::new(limits.decode_workers.max(1))),
            enroll_guard: Arc::new(EnrollGuard::new(
                limits.enroll_per_ip_per_minute,
                limits.enroll_per_minute,
            )),
            long_polls: Arc::default(),
            limits,
        }
    }

    /// Runs CPU-heavy `f` on the blocking pool once one of the [`AppState::work`] permits
    /// is free; a panic in `f` is answered 400 (`what` names the input, never its value).
    pub(crate) async fn work<R: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> Result<R, ApiError> + Send + 'static,
    ) -> Result<R, ApiError> {
        let _permit = self.work.clone().acquire_owned().await.map_err(internal)?;
        tokio::task::spawn_blocking(move || {
            crate::ingest::guarded(f).unwrap_or_else(|| {
                tracing::warn!(input = what, "refused an input that made a decoder panic");
                Err(ApiError::bad_request(format!(
                    "{what} could not be processed; nothing was stored"
                )))
            })
        })
        .await
        .map_err(internal)?
    }
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/enroll", post(enroll))
        .route("/v1/refresh", post(refresh))
        .route("/v1/session", post(session))
        .route("/v1/push", post(push))
        .route("/v1/pull", post(pull))
        .route("/v1/bootstrap", post(bootstrap))
        .route("/v1/repair", post(repair))
        .route("/v1/escalate", post(escalate))
        .route("/v1/estimate", post(estimate))
        .route_layer(middleware::from_fn(check_protocol));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(v1)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.limits.body_timeout,
        ))
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
    let mut text = st.metrics.render();
    match st.storage.quarantined().await {
        Ok(q) => text.push_str(&crate::metrics::quarantined_gauge(q.len())),
        Err(e) => tracing::error!(error = %e, "listing quarantined documents failed"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

// ----- bodies -----

/// Reads a body within the endpoint's compressed cap, then decodes it within its
/// decompressed and item caps, off the async workers behind [`AppState::work`].
async fn read_body<T: DeserializeOwned + Send + 'static>(
    st: &AppState,
    body: Body,
    endpoint: Endpoint,
) -> Result<T, ApiError> {
    let (limit, decode) = st.limits.body_cap(endpoint);
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_timeout(&e) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body arrived too slowly",
            )
        } else {
            ApiError::from(Refusal::too_large(format!(
                "request body larger than {limit} bytes; send smaller batches"
            )))
        }
    })?;
    st.work("the request body", move || {
        proto::decode_within::<T>(&bytes, &decode).map_err(|e| match e {
            proto::WireError::TooLarge(_) | proto::WireError::TooManyItems(_) => {
                Refusal::too_large(e.to_string()).into()
            }
            other => ApiError::bad_request(format!(
                "malformed request body: {}",
                redact_values(&other.to_string())
            )),
        })
    })
    .await
}

fn is_timeout(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A decoder's message with every quoted value (serde quotes the string it could not use)
/// replaced by `"…"`, so an error never carries a resident's data.
pub fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
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
    let (device, user) = st
        .secret
        .verify_access(token.trim(), now, st.limits.access_ttl_ms)?;
    standing(st, &device, &user).await
}

/// The caller as the database has it now: its grants and held grids, refused when the
/// device is unknown or revoked.
async fn standing(st: &AppState, device: &str, user: &str) -> Result<Caller, ApiError> {
    let now = now_ms();
    match st.storage.device_standing(device, user, now).await? {
        DeviceStanding::Unknown => Err(credential_refused(CredentialRefusal::NotEnrolled)),
        DeviceStanding::Reset => Err(credential_refused(CredentialRefusal::DeviceReset)),
        DeviceStanding::Revoked { held_grids } => Err(revoked(&held_grids)),
        DeviceStanding::Active(c) => Ok(c),
    }
}

/// `401` with code `reenroll`: only a new enrollment mends it; the phone keeps its data.
fn credential_refused(why: CredentialRefusal) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, why.code(), why.message())
}

/// `401` with code `revoked` and the grids to purge: the device must delete its data.
fn revoked(held_grids: &[String]) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        credentials::REVOKED_CODE,
        credentials::REVOKED_MESSAGE,
    )
    .with_purge(held_grids)
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

/// The client's address as the connection has it (none in in-process tests).
fn peer_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// A 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(message: &str, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut resp =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Enrollment behind its attempt limits ([`EnrollGuard`]): a refused code counts as a
/// failure of the client's address; refusals are logged at a bounded rate.
async fn enroll(State(st): State<AppState>, req: Request) -> Response {
    let ip = peer_ip(&req);
    if let Err(wait) = st.enroll_guard.admit(ip) {
        Metrics::add(&st.metrics.enroll_throttled, 1);
        if let Some(unlogged) = st.enroll_guard.may_log() {
            tracing::warn!(
                peer = %ip,
                unlogged,
                retry_after_s = wait.as_secs(),
                "enrollment attempts throttled"
            );
        }
        return too_many("too many enrollment attempts; wait and try again", wait);
    }
    match enroll_checked(&st, req.into_body()).await {
        Ok(r) => {
            st.enroll_guard.succeeded(ip);
            r
        }
        Err(e) => {
            if e.status == StatusCode::UNAUTHORIZED {
                st.enroll_guard.failed(ip);
                if let Some(unlogged) = st.enroll_guard.may_log() {
                    tracing::warn!(peer = %ip, unlogged, "enrollment code refused");
                }
            }
            e.into_response()
        }
    }
}

async fn enroll_checked(st: &AppState, body: Body) -> Result<Response, ApiError> {
    let st = st.clone();
    let req: EnrollRequest = read_body(&st, body, Endpoint::Credentials).await?;
    let name = req.device_name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "device_name must be 1 to 64 characters without control characters",
        ));
    }
    let code_hash = st.secret.code_hash(&req.code).ok_or_else(|| {
        ApiError::from(Refusal::unauthorized(format!(
            "an enrollment code is {}",
            auth::CODE_FORMAT
        )))
    })?;
    let previous = req
        .previous_device
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    if previous.is_some_and(|p| p.len() > 64 || p.chars().any(char::is_control)) {
        return Err(ApiError::bad_request(
            "previous_device must be at most 64 bytes without control characters",
        ));
    }
    let device = auth::new_device_id().map_err(internal)?;
    let refresh = auth::new_refresh_token().map_err(internal)?;
    let now = now_ms();
    let refresh_hash = auth::refresh_hash(&refresh);
    let new = NewDevice {
        id: &device,
        name,
        refresh_hash: &refresh_hash,
        refresh_expires_ms: now + auth::REFRESH_TTL_MS,
    };
    let enrolled = match st
        .storage
        .enroll_device(&code_hash, &new, previous, now)
        .await?
    {
        EnrollOutcome::Enrolled(e) => e,
        EnrollOutcome::Refused => {
            return Err(Refusal::unauthorized(credentials::ENROLL_REFUSED).into());
        }
        EnrollOutcome::OtherUser => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "other_user",
                credentials::ENROLL_OTHER_USER,
            ));
        }
        EnrollOutcome::UnknownPrevious => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "unknown_device",
                credentials::ENROLL_UNKNOWN_DEVICE,
            ));
        }
    };
    Metrics::add(&st.metrics.enrollments, 1);
    match &enrolled.succeeds {
        Some(old) => tracing::info!(
            device,
            user = enrolled.user,
            succeeds = old,
            "device enrolled in place of an earlier one"
        ),
        None => tracing::info!(device, user = enrolled.user, "device enrolled"),
    }
    let communities = numbers::community_of(&st.storage.list_grids().await?);
    let number_blocks = numbers::device_blocks(
        &*st.storage,
        &device,
        &enrolled.grants,
        &communities,
        &[],
        now,
    )
    .await?;
    let resp = EnrollResponse {
        server_time_ms: now_ms(),
        tokens: tokens(&st, &device, &enrolled.user, refresh),
        device,
        user: enrolled.user,
        user_name: enrolled.user_name,
        grants: enrolled
            .grants
            .iter()
            .map(|g| numbers::grant_of(g, &communities))
            .collect(),
        number_blocks,
    };
    Ok(wire(&resp, None))
}

async fn refresh(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: RefreshRequest = read_body(&st, body, Endpoint::Credentials).await?;
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
        RefreshOutcome::Refused(why) => Err(credential_refused(why)),
        RefreshOutcome::Revoked { held_grids } => Err(revoked(&held_grids)),
    }
}

/// Who the device is now and its current grants (the first request of every sync); the
/// reply names the grids to purge like every other.
async fn session(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = authenticate(&st, &headers).await?;
    let req: SessionRequest = read_body(&st, body, Endpoint::Read)
        .await
        .map_err(|e| e.with_purge(&caller.purge_grids()))?;
    let (all_grants, users, grids) = (
        st.storage.list_grants().await?,
        st.storage.list_users().await?,
        st.storage.list_grids().await?,
    );
    let communities = numbers::community_of(&grids);
    let now = now_ms();
    let number_blocks = numbers::device_blocks(
        &*st.storage,
        &caller.device,
        &caller.grants,
        &communities,
        &req.numbers,
        now,
    )
    .await?;
    let resp = SessionResponse {
        server_time_ms: now,
        device: caller.device.clone(),
        user: caller.user.clone(),
        user_name: caller.user_name.clone(),
        grants: caller
            .grants
            .iter()
            .map(|g| numbers::grant_of(g, &communities))
            .collect(),
        people: Some(access::grid_people(&caller.grants, &all_grants, &users)),
        number_blocks,
    };
    Ok(wire(&resp, Some(&caller)))
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
        let req: PushRequest = read_body(&st, body, Endpoint::Push).await?;
        push_checked(&st, &caller, req).await
    }
    .await;
    let outcome = result.map_err(|e| e.with_purge(&purge))?;
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

/// Checks and stores a push of `caller` (a phone's, or the station console's on its
/// console device): parsed under a work permit, then [`Storage::push_within`] with the
/// device's quota; counted, logged when refused, and waking the long polls of the grids it
/// changed. The one path every change takes into the server.
pub async fn push_checked(
    st: &AppState,
    caller: &Caller,
    req: PushRequest,
) -> Result<crate::storage::PushOutcome, ApiError> {
    let result = async {
        let (devices, max, caps) = (
            caller.own_devices(),
            st.limits.max_push_changes,
            st.limits.ingest,
        );
        let own = caller.own_devices();
        let mut parsed = st
            .work("a pushed change", move || {
                ingest::parse_within(&devices, req, max, &caps).map_err(ApiError::from)
            })
            .await?;
        // What the device may number documents with (blocks are only ever added, so
        // reading them before the push's transaction is safe).
        parsed.numbers.blocks = st.storage.device_number_blocks(&own).await?;
        Ok::<_, ApiError>(
            st.storage
                .push_within(caller, parsed, &st.limits.quota)
                .await?,
        )
    }
    .await;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if e.status.is_client_error() {
                Metrics::add(&st.metrics.writes_refused, 1);
                // The code, not the message: a message may quote what was refused.
                tracing::info!(
                    device = caller.device,
                    user = caller.user,
                    status = e.status.as_u16(),
                    code = e.body.code,
                    "push refused"
                );
            }
            return Err(e);
        }
    };
    Metrics::add(&st.metrics.changes_stored, outcome.stored);
    Metrics::add(&st.metrics.duplicates, outcome.duplicates);
    if outcome.stored > 0 {
        for (grid, _) in &outcome.grid_seqs {
            st.notifier.notify(grid);
        }
    }
    Ok(outcome)
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
    let req: T = read_body(st, body, Endpoint::Read)
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
    let mut caller = caller;
    let mut scope = scope;
    if page.changes.is_empty() && page.moves.is_empty() && !page.more && wait > 0 {
        let Some(_slot) = LongPolls::open(
            &st.long_polls,
            &caller.device,
            st.limits.max_long_polls_per_device,
        ) else {
            Metrics::add(&st.metrics.long_polls_refused, 1);
            let mut resp = too_many(
                "this device has too many long polls open; wait for one to answer",
                Duration::from_secs(1),
            );
            if !purge.is_empty()
                && let Ok(v) = HeaderValue::from_str(&purge.join(","))
            {
                resp.headers_mut().insert(PURGE_HEADER, v);
            }
            return Ok(resp);
        };
        if tokio::time::timeout(Duration::from_millis(u64::from(wait)), notified)
            .await
            .is_ok()
        {
            // The device may have been revoked, or lost the grid or a building, while it
            // waited: check again before sending anything.
            caller = standing(&st, &caller.device, &caller.user).await?;
            scope = scope_for(&caller, &req.grid)?;
            let purge = caller.purge_grids();
            page = st
                .storage
                .pull(&req.grid, req.since, limit, &scope)
                .await
                .map_err(|e| ApiError::from(e).with_purge(&purge))?;
        }
    }
    // The device's own changes are not sent back to it: it has them (the cursor still moves
    // past them), nor those of the devices it succeeds (their data is on the same phone).
    // An undecodable stored change is sent as it is.
    let own: Vec<automerge::ActorId> = caller
        .own_devices()
        .iter()
        .map(|d| xiuhua_core::doc::actor_id(d))
        .collect();
    page.changes.retain(|(_, _, bytes)| {
        automerge::Change::try_from(bytes.as_slice()).map_or(true, |c| !own.contains(c.actor_id()))
    });
    Metrics::add(&st.metrics.pulls, 1);
    Metrics::add(&st.metrics.pulled_changes, page.changes.len() as u64);
    // What left or entered the caller's buildings in this page's window.
    let (moved_out, moved_in) = crate::storage::scope_moves(&scope, &page.moves);
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
        moved_out,
        moved_in,
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
    // A scope bootstrap (newly granted buildings) reads only those, within the grant.
    let scope = scope.narrowed_to(&req.buildings);
    let snap = st
        .storage
        .bootstrap(&req.grid, &scope, req.after.as_deref(), req.limit)
        .await
        .map_err(|e| ApiError::from(e).with_purge(&purge))?;
    // The first page says how many documents the whole bundle holds.
    let total_docs = if req.after.is_none() {
        let (n, _) = st
            .storage
            .grid_size(&req.grid, &scope)
            .await
            .map_err(|e| ApiError::from(e).with_purge(&purge))?;
        Some(n)
    } else {
        None
    };
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
            total_docs,
        };
        Ok(encode_with_purge(&bundle, &purge_in_body))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Metrics::add(&st.metrics.bootstraps, 1);
    Ok(respond(bytes, Some(&caller)))
}

/// Repair is read-only on the server and answers from the client's heads and needs only
/// (the client's Bloom filters are never evaluated: their sizes and probe counts are the
/// client's to claim): the reply carries every change of the server's copy that is not an
/// ancestor of a client head it knows, plus the needed changes it has. Changes carried in
/// the client's message are ignored (the client pushes its own through `/v1/push`). A
/// document that is unknown, or outside the caller's grants or buildings, gets the same 404.
async fn repair(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = authenticate(&st, &headers).await?;
    let purge = caller.purge_grids();
    let req: RepairRequest = read_body(&st, body, Endpoint::Repair)
        .await
        .map_err(|e| e.with_purge(&purge))?;
    let (meta, bytes) = visible_doc(&st, &caller, &req.doc).await?;
    let doc_id = meta.id.clone();
    let reply = st
        .work("the repair message", move || {
            repair_reply(&bytes, &req.message).map_err(|e| match e {
                RepairError::Message(why) => ApiError::bad_request(format!(
                    "document {doc_id}: not an Automerge sync message: {why}"
                )),
                RepairError::Stored(why) => internal(format!("document {doc_id}: {why}")),
            })
        })
        .await
        .map_err(|e| e.with_purge(&purge))?;
    Metrics::add(&st.metrics.repairs, 1);
    Ok(wire(
        &RepairResponse {
            message: reply.map(ByteBuf::from),
        },
        Some(&caller),
    ))
}

/// One 404 for a document the caller may not see and for one that does not exist (no
/// existence oracle), except `purge` for a grid the device held and lost.
fn not_visible(caller: &Caller, doc: &str) -> ApiError {
    ApiError::from(Refusal::not_found(format!(
        "document {doc} is not on the server for this device; push it if it is yours"
    )))
    .with_purge(&caller.purge_grids())
}

/// The document and its saved bytes when the caller may read it, else [`not_visible`].
async fn visible_doc(
    st: &AppState,
    caller: &Caller,
    doc: &str,
) -> Result<(crate::storage::DocMeta, Vec<u8>), ApiError> {
    let purge = caller.purge_grids();
    let Some((meta, bytes)) = st
        .storage
        .doc(doc)
        .await
        .map_err(|e| ApiError::from(e).with_purge(&purge))?
    else {
        return Err(not_visible(caller, doc));
    };
    let Some(grant) = caller.grant(&meta.grid) else {
        if purge.contains(&meta.grid) {
            return Err(scope_for(caller, &meta.grid)
                .err()
                .unwrap_or_else(|| not_visible(caller, doc)));
        }
        return Err(not_visible(caller, doc));
    };
    if !Scope::of(grant).covers(meta.building.as_deref()) {
        return Err(not_visible(caller, doc));
    }
    Ok((meta, bytes))
}

/// Why a repair could not be answered.
#[derive(Debug)]
pub enum RepairError {
    /// The client's message does not decode (400).
    Message(String),
    /// The stored document does not load (the server's fault).
    Stored(String),
}

/// Most needed hashes of a repair message looked at.
pub const REPAIR_MAX_NEED: usize = 4096;

/// The server's reply to a client's sync message for a document saved as `saved`: `None`
/// when the client has the same heads and needs nothing. Pure; see [`repair`].
pub fn repair_reply(saved: &[u8], message: &[u8]) -> Result<Option<Vec<u8>>, RepairError> {
    let msg = Message::decode(message).map_err(|e| RepairError::Message(e.to_string()))?;
    let doc = Automerge::load(saved).map_err(|e| RepairError::Stored(e.to_string()))?;
    let heads = doc.get_heads();
    if msg.heads == heads && msg.need.is_empty() {
        return Ok(None);
    }
    let known: Vec<ChangeHash> = msg
        .heads
        .iter()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .copied()
        .collect();
    let mut sent = HashSet::new();
    let mut chunks = Vec::new();
    for c in doc.get_changes(&known) {
        if sent.insert(c.hash()) {
            chunks.push(c.raw_bytes().to_vec());
        }
    }
    for h in msg.need.iter().take(REPAIR_MAX_NEED) {
        if !sent.contains(h)
            && let Some(c) = doc.get_change_by_hash(h)
        {
            sent.insert(*h);
            chunks.push(c.raw_bytes().to_vec());
        }
    }
    let reply = Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(chunks),
        flags: None,
        version: MessageVersion::V1,
    };
    Ok(Some(reply.encode()))
}

/// How big a first sync of each granted grid would be, in the caller's scope: asked by a
/// phone before it starts (on a slow or paid connection the worker may wait for Wi-Fi).
async fn estimate(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = authenticate(&st, &headers).await?;
    let purge = caller.purge_grids();
    let result = async {
        let _: EstimateRequest = read_body(&st, body, Endpoint::Read).await?;
        let mut grids = Vec::with_capacity(caller.grants.len());
        for g in &caller.grants {
            let (docs, bytes) = st.storage.grid_size(&g.grid, &Scope::of(g)).await?;
            grids.push(GridEstimate {
                grid: g.grid.clone(),
                docs,
                bytes,
            });
        }
        Ok::<_, ApiError>(grids)
    }
    .await;
    let grids = result.map_err(|e| e.with_purge(&purge))?;
    Ok(wire(
        &EstimateResponse {
            server_time_ms: now_ms(),
            grids,
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
        let req: EscalateRequest = read_body(&st, body, Endpoint::Read).await?;
        let to = Tier::parse(&req.tier).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let (meta, _) = visible_doc(&st, &caller, &req.task).await?;
        if meta.kind != DocKind::Task {
            return Err(ApiError::bad_request(format!(
                "{} is a {}, not a task",
                meta.id,
                meta.kind.as_str()
            )));
        }
        escalate_task(&*st.storage, &caller, &meta, to, req.unit.as_deref()).await?;
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

/// Moves a task the caller may see up to tier `to` (to a linked unit: naming it), the
/// server's side of an escalation: the rule of `/v1/escalate` and of the station console's
/// escalation, which records the event only after this has succeeded.
pub async fn escalate_task(
    storage: &dyn Storage,
    caller: &Caller,
    meta: &crate::storage::DocMeta,
    to: Tier,
    unit: Option<&str>,
) -> Result<(), ApiError> {
    let grant = caller
        .grant(&meta.grid)
        .ok_or_else(|| not_visible(caller, &meta.id))?;
    access::check_escalation(grant.role, meta.tier, to)?;
    let unit = unit.map(str::trim).filter(|u| !u.is_empty());
    if to == Tier::LinkedUnit && unit.is_none() {
        return Err(ApiError::bad_request(
            "escalating to a linked unit needs the unit (物业, 建设, 执法 or a co-building unit)",
        ));
    }
    if unit.is_some_and(|u| u.chars().count() > 64) {
        return Err(ApiError::bad_request("unit longer than 64 characters"));
    }
    if !storage.set_tier(&meta.id, meta.tier, to, unit).await? {
        return Err(Refusal::conflict(format!(
            "task {} changed tier concurrently; retry",
            meta.id
        ))
        .into());
    }
    tracing::info!(task = meta.id, from = %meta.tier, to = %to, user = caller.user, "task escalated");
    Ok(())
}
