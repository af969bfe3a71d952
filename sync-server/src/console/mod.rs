//! The station console: server-rendered HTML under `/console/`, enabled by configuration
//! (`XIUHUA_CONSOLE=1`, [`crate::config::ConsoleConfig`]).
//!
//! - Templates: askama (`sync-server/templates/console/`), compiled into the binary and
//!   checked at build time; every value is HTML-escaped. The one style sheet is embedded
//!   ([`CSS`]); there is no JavaScript and nothing is loaded from elsewhere.
//! - Strings: [`i18n`], one table per language; Chinese unless the `xiuhua_lang` cookie
//!   says `en` (`/console/lang/en`, `/console/lang/zh`).
//! - Accounts: directory users with a password set by `xiuhua-server set-password`
//!   ([`password`], argon2id). Sessions: a random token in an HttpOnly, SameSite=Strict cookie
//!   (`Secure` when `secure_cookie` is set), stored as its SHA-256, ending when idle or old
//!   ([`rules::session_live`]) or at logout.
//! - CSRF: every form carries a token, the HMAC of the session's hash under the server
//!   secret (before login: of a random pre-login cookie); a POST without the right one is
//!   refused 403 before anything else is looked at.
//! - Failed logins: per account (the fifth failure locks it, [`rules::after_failure`]) and
//!   per address ([`crate::edge::EnrollGuard`]'s rate and back-off).
//! - Audit: every login, logout and action, with user, time, address and outcome.
//! - Who sees what: the grids of the user's grants except 楼门长 ones (a 社区 role granted
//!   on the community has a grant on each of its grids); administration is for users with
//!   a 管理员 grant and acts only on those grids. Anything else is the same 404 as a page
//!   that does not exist.

pub mod act;
pub mod board;
pub mod chart;
pub mod export;
pub mod i18n;
pub mod ledgers;
pub mod password;
pub mod rules;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tower_http::set_header::SetResponseHeaderLayer;
use xiuhua_core::model::Role;

use crate::access::GrantRow;
use crate::admin::{self, GrantTarget};
use crate::auth::{self, Secret};
use crate::config::ConsoleConfig;
use crate::edge::EnrollGuard;
use crate::error::StoreError;
use crate::http::AppState;
use crate::storage::{AuditEntry, ConsoleSession, GridInfo, Storage};
use i18n::{Lang, Strings};
use rules::SessionPolicy;

/// The session cookie.
pub const SESSION_COOKIE: &str = "xiuhua_console";
/// The pre-login cookie the login form's CSRF token is bound to.
pub const LOGIN_COOKIE: &str = "xiuhua_login";
/// The language cookie.
pub const LANG_COOKIE: &str = "xiuhua_lang";
/// The console's style sheet.
pub const CSS: &str = include_str!("assets/console.css");
/// The Content-Security-Policy of every console answer: nothing but this server's own
/// style sheet; no script at all, no framing, forms only to this server.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Largest form body.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Audit rows per page.
const AUDIT_PAGE: u32 = 100;

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    /// The sync server's state: console actions push through it like a phone.
    app: AppState,
    storage: Arc<dyn Storage>,
    secret: Secret,
    /// The server's permits for CPU-heavy work: password hashing takes one.
    work: Arc<Semaphore>,
    policy: SessionPolicy,
    secure_cookie: bool,
    public_url: Option<String>,
    logins: Arc<EnrollGuard>,
}

/// Failed logins per address: a rate (per minute) and overall.
const LOGIN_FAILURES_PER_IP_PER_MINUTE: u32 = 20;
const LOGIN_FAILURES_PER_MINUTE: u32 = 200;

/// The console's routes (to merge into [`crate::http::router`]'s).
pub fn router(app: &AppState, cfg: &ConsoleConfig) -> Router {
    let minutes = |m: u64| i64::try_from(m.saturating_mul(60_000)).unwrap_or(i64::MAX);
    let con = Console {
        app: app.clone(),
        storage: app.storage.clone(),
        secret: app.secret.clone(),
        work: app.work.clone(),
        policy: SessionPolicy {
            idle_ms: minutes(cfg.idle_minutes),
            absolute_ms: minutes(cfg.session_hours.saturating_mul(60)),
        },
        secure_cookie: cfg.secure_cookie,
        public_url: cfg.public_url.clone(),
        logins: Arc::new(EnrollGuard::new(
            LOGIN_FAILURES_PER_IP_PER_MINUTE,
            LOGIN_FAILURES_PER_MINUTE,
        )),
    };
    let fixed = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/lang/{lang}", get(set_lang))
        .route("/console/assets/console.css", get(css))
        .route("/console/grids/{grid}", get(grid_page))
        .route("/console/audit", get(audit_page))
        .route("/console/admin", get(admin_page))
        .route("/console/admin/users", post(admin_add_user))
        .route("/console/admin/grants", post(admin_grant))
        .route("/console/admin/revoke-grant", post(admin_revoke_grant))
        .route("/console/admin/buildings", post(admin_add_building))
        .route("/console/admin/revoke-device", post(admin_revoke_device))
        .route("/console/admin/enroll-code", post(admin_enroll_code))
        .merge(board::routes())
        .merge(ledgers::routes())
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            app.limits.body_timeout,
        ))
        .layer(fixed("content-security-policy", CSP))
        .layer(fixed("x-frame-options", "DENY"))
        .layer(fixed("x-content-type-options", "nosniff"))
        .layer(fixed("referrer-policy", "same-origin"))
        .layer(fixed("cache-control", "no-store"))
        .with_state(con)
}

// ----- the request's client -----

/// Who is asking: address, language, cookies, host.
pub struct Client {
    ip: IpAddr,
    lang: Lang,
    cookies: HashMap<String, String>,
    host: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Client, Infallible> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        let cookies = parse_cookies(&parts.headers);
        let lang = Lang::from_cookie(cookies.get(LANG_COOKIE).map(String::as_str));
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            })
            .map(str::to_string);
        Ok(Client {
            ip,
            lang,
            cookies,
            host,
        })
    }
}

impl Client {
    fn t(&self) -> &'static Strings {
        self.lang.strings()
    }
    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }
}

/// The cookies of a request (the first of each name).
pub fn parse_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for h in headers.get_all(header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                out.entry(k.trim().to_string())
                    .or_insert_with(|| v.trim().to_string());
            }
        }
    }
    out
}

// ----- the signed-in user -----

/// A signed-in console user.
struct Me {
    user: String,
    name: String,
    session_hash: String,
    csrf: String,
    grants: Vec<GrantRow>,
}

impl Me {
    /// The grids this user sees in the console, with the role there.
    fn grids(&self) -> Vec<(&str, Role)> {
        self.grants
            .iter()
            .filter(|g| g.role != Role::BuildingLeader)
            .map(|g| (g.grid.as_str(), g.role))
            .collect()
    }

    /// The grids this user administers.
    fn admin_grids(&self) -> BTreeSet<String> {
        self.grants
            .iter()
            .filter(|g| g.role == Role::Admin)
            .map(|g| g.grid.clone())
            .collect()
    }
}

/// SHA-256 of a session token, hex: what the database keeps.
pub fn session_hash(token: &str) -> String {
    auth::hex(&Sha256::digest(token.as_bytes()))
}

type Answer = Result<Response, Response>;

impl Console {
    fn csrf_of(&self, session_hash: &str) -> String {
        self.secret.tag("console-csrf", session_hash)
    }

    fn cookie(&self, name: &str, value: &str, max_age_secs: Option<i64>) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        let age = max_age_secs.map_or(String::new(), |s| format!("; Max-Age={s}"));
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/console; HttpOnly; SameSite=Strict{secure}{age}"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }

    /// The signed-in user of a request, if any.
    async fn me(&self, c: &Client) -> Result<Option<Me>, Response> {
        let Some(token) = c.cookie(SESSION_COOKIE) else {
            return Ok(None);
        };
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let hash = session_hash(token);
        let now = crate::now_ms();
        let Some(s) = self
            .storage
            .touch_session(&hash, now, &self.policy)
            .await
            .map_err(|e| self.fail(c, e))?
        else {
            return Ok(None);
        };
        let Some(acct) = self
            .storage
            .console_account(&s.user)
            .await
            .map_err(|e| self.fail(c, e))?
        else {
            return Ok(None);
        };
        if acct.revoked {
            return Ok(None);
        }
        let grants = self
            .storage
            .list_grants()
            .await
            .map_err(|e| self.fail(c, e))?
            .into_iter()
            .filter(|g| g.user == s.user)
            .collect();
        Ok(Some(Me {
            csrf: self.csrf_of(&hash),
            user: s.user,
            name: acct.name,
            session_hash: hash,
            grants,
        }))
    }

    /// The signed-in user, or the answer to send instead (to the login page).
    async fn require(&self, c: &Client) -> Result<Me, Response> {
        match self.me(c).await? {
            Some(m) => Ok(m),
            None => Err(Redirect::to("/console/login").into_response()),
        }
    }

    /// [`Console::require`] plus a CSRF check of a POSTed form (403 without the token).
    async fn require_post(
        &self,
        c: &Client,
        form: &HashMap<String, String>,
        action: &str,
    ) -> Result<Me, Response> {
        let me = self.require(c).await?;
        let given = form.get("csrf").map_or("", String::as_str);
        if !self
            .secret
            .check_tag("console-csrf", &me.session_hash, given)
        {
            self.record(
                &me.user,
                c,
                action,
                "refused: missing or wrong CSRF token",
                false,
            )
            .await?;
            return Err(self.message(c, Some(&me), StatusCode::FORBIDDEN, c.t().csrf_refused));
        }
        Ok(me)
    }

    /// [`Console::require_post`] for a 管理员 (anyone else: 404).
    async fn require_admin_post(
        &self,
        c: &Client,
        form: &HashMap<String, String>,
        action: &str,
    ) -> Result<Me, Response> {
        let me = self.require_post(c, form, action).await?;
        if me.admin_grids().is_empty() {
            return Err(self.out_of_scope(c, &me, action, "not a 管理员").await);
        }
        Ok(me)
    }

    /// Refuses an action on something outside the user's grants: audited, then the one 404.
    async fn out_of_scope(&self, c: &Client, me: &Me, action: &str, detail: &str) -> Response {
        let d = format!("refused: not found or not theirs: {detail}");
        match self.record(&me.user, c, action, &d, false).await {
            Ok(()) => self.not_found_for(c, Some(me)),
            Err(r) => r,
        }
    }

    /// Appends to the audit log; a failure to do so is a 500.
    async fn record(
        &self,
        user: &str,
        c: &Client,
        action: &str,
        detail: &str,
        ok: bool,
    ) -> Result<(), Response> {
        let e = AuditEntry {
            id: 0,
            at_ms: crate::now_ms(),
            user: user.chars().take(64).collect(),
            ip: c.ip.to_string(),
            action: action.to_string(),
            detail: detail.chars().take(500).collect(),
            ok,
        };
        self.storage.audit(&e).await.map_err(|e| self.fail(c, e))
    }

    fn nav(&self, c: &Client, me: Option<&Me>) -> Nav {
        Nav {
            t: c.t(),
            lang: c.lang,
            user: me.map(|m| NavUser {
                id: m.user.clone(),
                name: m.name.clone(),
            }),
            csrf: me.map(|m| m.csrf.clone()).unwrap_or_default(),
            admin: me.is_some_and(|m| !m.admin_grids().is_empty()),
            flash: None,
            flash_ok: true,
        }
    }

    fn message(&self, c: &Client, me: Option<&Me>, status: StatusCode, text: &str) -> Response {
        page(
            status,
            &MessagePage {
                nav: self.nav(c, me),
                title: text.to_string(),
            },
        )
    }

    /// The one 404: for what does not exist and for what is not the user's.
    fn not_found_for(&self, c: &Client, me: Option<&Me>) -> Response {
        self.message(c, me, StatusCode::NOT_FOUND, c.t().not_found)
    }

    fn fail(&self, c: &Client, e: StoreError) -> Response {
        tracing::error!(error = %e, "console: storage failed");
        self.message(
            c,
            None,
            StatusCode::INTERNAL_SERVER_ERROR,
            c.t().server_error,
        )
    }

    /// Runs a password check on the blocking pool under one of the server's work permits.
    async fn verify_password(&self, password: String, phc: String) -> bool {
        let Ok(_permit) = self.work.clone().acquire_owned().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || password::verify(&password, &phc))
            .await
            .unwrap_or(false)
    }
}

fn page<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// A time for people: `YYYY-MM-DD HH:MM:SS` in Beijing time (UTC+8, the stations' zone).
pub fn format_ms(ms: i64) -> String {
    let shifted = u64::try_from(ms.saturating_add(8 * 3_600_000)).unwrap_or(0);
    let s = xiuhua_core::hlc::Hlc::new(shifted, 0).to_string();
    let mut out: String = s.chars().take(19).collect();
    out = out.replacen('T', " ", 1);
    out
}

// ----- templates -----

/// The frame of every page.
pub struct Nav {
    t: &'static Strings,
    lang: Lang,
    user: Option<NavUser>,
    csrf: String,
    admin: bool,
    flash: Option<String>,
    flash_ok: bool,
}

pub struct NavUser {
    id: String,
    name: String,
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    nav: Nav,
    title: String,
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    nav: Nav,
    csrf: String,
    user: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/grid.html")]
struct GridPage {
    nav: Nav,
    grid: GridInfo,
    role: String,
}

struct AuditRow {
    at: String,
    user: String,
    ip: String,
    action: String,
    detail: String,
    ok: bool,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    nav: Nav,
    entries: Vec<AuditRow>,
    older: Option<i64>,
}

struct DeviceRow {
    id: String,
    user: String,
    name: String,
    created: String,
    last_seen: String,
    status: String,
    can_revoke: bool,
}

#[derive(Template)]
#[template(path = "console/admin.html")]
struct AdminPage {
    nav: Nav,
    users: Vec<crate::storage::UserInfo>,
    grants: Vec<GrantRow>,
    grids: Vec<GridInfo>,
    devices: Vec<DeviceRow>,
    roles: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "console/enroll.html")]
struct EnrollPage {
    nav: Nav,
    user: String,
    server: String,
    code: String,
    qr_svg: String,
}

// ----- handlers -----

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        CSS,
    )
        .into_response()
}

async fn set_lang(State(con): State<Console>, Path(lang): Path<String>) -> Response {
    let v = if lang == "en" { "en" } else { "zh" };
    let mut r = Redirect::to("/console/").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        con.cookie(LANG_COOKIE, v, Some(365 * 24 * 3600)),
    );
    r
}

async fn not_found(State(con): State<Console>, c: Client) -> Response {
    match con.me(&c).await {
        Ok(me) => con.not_found_for(&c, me.as_ref()),
        Err(r) => r,
    }
}

async fn login_form(State(con): State<Console>, c: Client) -> Response {
    match con.me(&c).await {
        Ok(Some(_)) => return Redirect::to("/console/").into_response(),
        Ok(None) => {}
        Err(r) => return r,
    }
    login_page(&con, &c, StatusCode::OK, String::new(), None)
}

/// The login form, with a pre-login cookie (set anew when missing) its token is bound to.
fn login_page(
    con: &Console,
    c: &Client,
    status: StatusCode,
    user: String,
    error: Option<String>,
) -> Response {
    let existing = c
        .cookie(LOGIN_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string);
    let (value, fresh) = match existing {
        Some(v) => (v, false),
        None => match auth::random_bytes::<16>() {
            Ok(b) => (auth::hex(&b), true),
            Err(_) => {
                return con.message(
                    c,
                    None,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    c.t().server_error,
                );
            }
        },
    };
    let mut r = page(
        status,
        &LoginPage {
            nav: con.nav(c, None),
            csrf: con.secret.tag("console-login", &value),
            user,
            error,
        },
    );
    if fresh {
        r.headers_mut()
            .append(header::SET_COOKIE, con.cookie(LOGIN_COOKIE, &value, None));
    }
    r
}

async fn login(
    State(con): State<Console>,
    c: Client,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    login_inner(&con, &c, &form).await.unwrap_or_else(|r| r)
}

async fn login_inner(con: &Console, c: &Client, form: &HashMap<String, String>) -> Answer {
    let t = c.t();
    let claimed: String = form
        .get("user")
        .map_or("", String::as_str)
        .trim()
        .chars()
        .take(64)
        .collect();
    let bound = c.cookie(LOGIN_COOKIE).unwrap_or("");
    let given = form.get("csrf").map_or("", String::as_str);
    if bound.is_empty() || !con.secret.check_tag("console-login", bound, given) {
        con.record(
            &claimed,
            c,
            "login",
            "refused: missing or wrong CSRF token",
            false,
        )
        .await?;
        return Ok(con.message(c, None, StatusCode::FORBIDDEN, t.csrf_refused));
    }
    if let Err(wait) = con.logins.admit(c.ip) {
        let secs = i64::try_from(wait.as_secs()).unwrap_or(i64::MAX) + 1;
        con.record(
            &claimed,
            c,
            "login",
            "refused: too many failures from this address",
            false,
        )
        .await?;
        return Ok(login_page(
            con,
            c,
            StatusCode::TOO_MANY_REQUESTS,
            claimed,
            Some(Strings::with_secs(t.too_many, secs)),
        ));
    }
    let password = form.get("password").cloned().unwrap_or_default();
    let known = if admin::check_id("user", &claimed).is_ok() {
        con.storage
            .console_account(&claimed)
            .await
            .map_err(|e| con.fail(c, e))?
    } else {
        None
    };
    let now = crate::now_ms();
    if let Some(acct) = &known {
        let failures = con
            .storage
            .login_failures(&acct.user)
            .await
            .map_err(|e| con.fail(c, e))?;
        if let Some(ms) = rules::locked_for(failures.as_ref(), now) {
            // Refused whatever the password: not even checked.
            con.record(&claimed, c, "login", "refused: account locked", false)
                .await?;
            return Ok(login_page(
                con,
                c,
                StatusCode::TOO_MANY_REQUESTS,
                claimed,
                Some(Strings::with_secs(t.locked, (ms + 999) / 1000)),
            ));
        }
    }
    let phc = known
        .as_ref()
        .and_then(|a| a.password_hash.clone())
        .unwrap_or_else(|| password::dummy().to_string());
    let matches = con.verify_password(password, phc).await;
    let usable = known
        .as_ref()
        .is_some_and(|a| a.password_hash.is_some() && !a.revoked);
    if matches && usable {
        let Some(acct) = known else {
            return Err(con.message(c, None, StatusCode::INTERNAL_SERVER_ERROR, t.server_error));
        };
        let token = auth::random_bytes::<32>()
            .map(|b| auth::hex(&b))
            .map_err(|_| con.message(c, None, StatusCode::INTERNAL_SERVER_ERROR, t.server_error))?;
        let session = ConsoleSession {
            hash: session_hash(&token),
            user: acct.user.clone(),
            created_ms: now,
            last_seen_ms: now,
            ip: c.ip.to_string(),
        };
        let audit = AuditEntry {
            id: 0,
            at_ms: now,
            user: acct.user.clone(),
            ip: c.ip.to_string(),
            action: "login".into(),
            detail: String::new(),
            ok: true,
        };
        con.storage
            .begin_session(&session, &audit)
            .await
            .map_err(|e| con.fail(c, e))?;
        con.logins.succeeded(c.ip);
        let mut r = Redirect::to("/console/").into_response();
        let h = r.headers_mut();
        h.append(header::SET_COOKIE, con.cookie(SESSION_COOKIE, &token, None));
        h.append(header::SET_COOKIE, con.cookie(LOGIN_COOKIE, "", Some(0)));
        return Ok(r);
    }
    con.logins.failed(c.ip);
    let why = match &known {
        None => "refused: unknown user",
        Some(a) if a.revoked => "refused: user revoked",
        Some(a) if a.password_hash.is_none() => "refused: no console password set",
        Some(_) => "refused: wrong password",
    };
    let mut message = t.login_failed.to_string();
    if let Some(acct) = &known {
        let audit = AuditEntry {
            id: 0,
            at_ms: now,
            user: acct.user.clone(),
            ip: c.ip.to_string(),
            action: "login".into(),
            detail: why.into(),
            ok: false,
        };
        let f = con
            .storage
            .record_login_failure(&acct.user, now, &audit)
            .await
            .map_err(|e| con.fail(c, e))?;
        if let Some(ms) = rules::locked_for(Some(&f), now) {
            message = Strings::with_secs(t.locked, (ms + 999) / 1000);
        }
    } else {
        con.record(&claimed, c, "login", why, false).await?;
    }
    Ok(login_page(
        con,
        c,
        StatusCode::UNAUTHORIZED,
        claimed,
        Some(message),
    ))
}

async fn logout(
    State(con): State<Console>,
    c: Client,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let inner = async {
        let me = con.require_post(&c, &form, "logout").await?;
        con.storage
            .end_session(&me.session_hash)
            .await
            .map_err(|e| con.fail(&c, e))?;
        con.record(&me.user, &c, "logout", "", true).await?;
        let mut r = Redirect::to("/console/login").into_response();
        r.headers_mut()
            .append(header::SET_COOKIE, con.cookie(SESSION_COOKIE, "", Some(0)));
        Ok::<Response, Response>(r)
    };
    inner.await.unwrap_or_else(|r| r)
}

async fn grid_page(State(con): State<Console>, c: Client, Path(grid): Path<String>) -> Response {
    let inner = async {
        let me = con.require(&c).await?;
        let Some(role) = me.grids().iter().find(|(g, _)| *g == grid).map(|(_, r)| *r) else {
            return Err(con.not_found_for(&c, Some(&me)));
        };
        let Some(info) = con
            .storage
            .list_grids()
            .await
            .map_err(|e| con.fail(&c, e))?
            .into_iter()
            .find(|g| g.id == grid)
        else {
            return Err(con.not_found_for(&c, Some(&me)));
        };
        Ok(page(
            StatusCode::OK,
            &GridPage {
                nav: con.nav(&c, Some(&me)),
                grid: info,
                role: role.as_str().to_string(),
            },
        ))
    };
    inner.await.unwrap_or_else(|r| r)
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    before: Option<i64>,
}

async fn audit_page(
    State(con): State<Console>,
    c: Client,
    Query(q): Query<AuditQuery>,
) -> Response {
    let inner = async {
        let me = con.require(&c).await?;
        if me.admin_grids().is_empty() {
            return Err(con.not_found_for(&c, Some(&me)));
        }
        let rows = con
            .storage
            .audit_log(q.before, AUDIT_PAGE)
            .await
            .map_err(|e| con.fail(&c, e))?;
        let older = (rows.len() == AUDIT_PAGE as usize)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        let entries = rows
            .into_iter()
            .map(|e| AuditRow {
                at: format_ms(e.at_ms),
                user: e.user,
                ip: e.ip,
                action: e.action,
                detail: e.detail,
                ok: e.ok,
            })
            .collect();
        Ok(page(
            StatusCode::OK,
            &AuditPage {
                nav: con.nav(&c, Some(&me)),
                entries,
                older,
            },
        ))
    };
    inner.await.unwrap_or_else(|r| r)
}

async fn admin_page(State(con): State<Console>, c: Client) -> Response {
    let inner = async {
        let me = con.require(&c).await?;
        if me.admin_grids().is_empty() {
            return Err(con.not_found_for(&c, Some(&me)));
        }
        admin_view(&con, &c, &me, StatusCode::OK, None).await
    };
    inner.await.unwrap_or_else(|r| r)
}

/// The administration page, limited to the grids `me` administers, with an outcome.
async fn admin_view(
    con: &Console,
    c: &Client,
    me: &Me,
    status: StatusCode,
    flash: Option<(bool, String)>,
) -> Answer {
    let t = c.t();
    let scope = me.admin_grids();
    let s = &con.storage;
    let users = s.list_users().await.map_err(|e| con.fail(c, e))?;
    let grants: Vec<GrantRow> = s
        .list_grants()
        .await
        .map_err(|e| con.fail(c, e))?
        .into_iter()
        .filter(|g| scope.contains(&g.grid))
        .collect();
    let grids = s
        .list_grids()
        .await
        .map_err(|e| con.fail(c, e))?
        .into_iter()
        .filter(|g| scope.contains(&g.id))
        .collect();
    let in_scope: BTreeSet<&str> = grants.iter().map(|g| g.user.as_str()).collect();
    let devices = s
        .list_devices(None)
        .await
        .map_err(|e| con.fail(c, e))?
        .into_iter()
        .filter(|d| in_scope.contains(d.user.as_str()))
        .map(|d| DeviceRow {
            status: if d.revoked {
                t.revoked
            } else if d.reset {
                t.reset
            } else {
                t.active
            }
            .to_string(),
            can_revoke: !d.revoked,
            created: format_ms(d.created_ms),
            last_seen: d
                .last_seen_ms
                .map_or_else(|| t.never.to_string(), format_ms),
            id: d.id,
            user: d.user,
            name: d.name,
        })
        .collect();
    let mut nav = con.nav(c, Some(me));
    if let Some((ok, text)) = flash {
        nav.flash = Some(format!("{}{text}", if ok { t.done } else { t.refused }));
        nav.flash_ok = ok;
    }
    Ok(page(
        status,
        &AdminPage {
            nav,
            users,
            grants,
            grids,
            devices,
            roles: [
                Role::GridMember,
                Role::BuildingLeader,
                Role::CommunityStaff,
                Role::Secretary,
                Role::Admin,
            ]
            .iter()
            .map(|r| r.as_str())
            .collect(),
        },
    ))
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", |v| v.trim())
}

/// Whether `user` has a grant on one of the grids `me` administers.
async fn user_in_scope(con: &Console, c: &Client, me: &Me, user: &str) -> Result<bool, Response> {
    let scope = me.admin_grids();
    Ok(con
        .storage
        .list_grants()
        .await
        .map_err(|e| con.fail(c, e))?
        .iter()
        .any(|g| g.user == user && scope.contains(&g.grid)))
}

/// Audits an administration action's outcome and shows the administration page with it.
async fn admin_outcome(
    con: &Console,
    c: &Client,
    me: &Me,
    action: &str,
    detail: &str,
    r: Result<String, StoreError>,
) -> Answer {
    let (ok, status, text) = match r {
        Ok(done) => (true, StatusCode::OK, done),
        Err(e) => {
            let status = match &e {
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                StoreError::Duplicate(_) => StatusCode::CONFLICT,
                StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, action, "console: action failed");
                (false, status, c.t().server_error.to_string())
            } else {
                (false, status, e.to_string())
            }
        }
    };
    let d = if ok {
        detail.to_string()
    } else {
        format!("{detail}: {text}")
    };
    con.record(&me.user, c, action, &d, ok).await?;
    admin_view(con, c, me, status, Some((ok, text))).await
}

macro_rules! admin_handler {
    ($name:ident, $action:literal, |$con:ident, $c:ident, $me:ident, $form:ident| $body:block) => {
        async fn $name(
            State($con): State<Console>,
            $c: Client,
            Form($form): Form<HashMap<String, String>>,
        ) -> Response {
            let inner = async {
                let $me = $con.require_admin_post(&$c, &$form, $action).await?;
                let ($con, $c, $me, $form) = (&$con, &$c, &$me, &$form);
                $body
            };
            inner.await.unwrap_or_else(|r| r)
        }
    };
}

admin_handler!(admin_add_user, "add_user", |con, c, me, form| {
    let (id, name) = (field(form, "id"), field(form, "name"));
    let r = admin::add_user(&*con.storage, id, name).await;
    admin_outcome(con, c, me, "add_user", &format!("user={id} name={name}"), r).await
});

admin_handler!(admin_grant, "grant", |con, c, me, form| {
    let user = field(form, "user");
    let role = field(form, "role");
    let buildings: Vec<String> = field(form, "buildings")
        .split([',', '，', '、'])
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    let scope = me.admin_grids();
    let detail = format!(
        "user={user} grid={} community={} role={role} buildings={}",
        field(form, "grid"),
        field(form, "community"),
        buildings.join(",")
    );
    let target = match (field(form, "grid"), field(form, "community")) {
        (g, "") if !g.is_empty() => {
            if !scope.contains(g) {
                return Err(con.out_of_scope(c, me, "grant", &detail).await);
            }
            GrantTarget::Grid(g.to_string())
        }
        ("", m) if !m.is_empty() => {
            // Every grid of the community must be one this admin administers.
            let grids = match con.storage.community_grids(m).await {
                Ok(g) => g,
                Err(StoreError::NotFound(_)) => {
                    return Err(con.out_of_scope(c, me, "grant", &detail).await);
                }
                Err(e) => return Err(con.fail(c, e)),
            };
            if grids.is_empty() || !grids.iter().all(|g| scope.contains(g)) {
                return Err(con.out_of_scope(c, me, "grant", &detail).await);
            }
            GrantTarget::Community(m.to_string())
        }
        _ => {
            let r = Err(StoreError::Invalid(
                "give a grid or a community, not both".into(),
            ));
            return admin_outcome(con, c, me, "grant", &detail, r).await;
        }
    };
    let r = admin::grant(&*con.storage, user, target, role, &buildings).await;
    admin_outcome(con, c, me, "grant", &detail, r).await
});

admin_handler!(admin_revoke_grant, "revoke_grant", |con, c, me, form| {
    let (user, grid) = (field(form, "user"), field(form, "grid"));
    let detail = format!("user={user} grid={grid}");
    if !me.admin_grids().contains(grid) {
        return Err(con.out_of_scope(c, me, "revoke_grant", &detail).await);
    }
    let r = admin::revoke_grant(&*con.storage, user, grid).await;
    admin_outcome(con, c, me, "revoke_grant", &detail, r).await
});

admin_handler!(admin_add_building, "add_building", |con, c, me, form| {
    let (grid, name) = (field(form, "grid"), field(form, "name"));
    let detail = format!("grid={grid} building={name}");
    if !me.admin_grids().contains(grid) {
        return Err(con.out_of_scope(c, me, "add_building", &detail).await);
    }
    let r = admin::add_building(&*con.storage, grid, name).await;
    admin_outcome(con, c, me, "add_building", &detail, r).await
});

admin_handler!(admin_revoke_device, "revoke_device", |con, c, me, form| {
    let device = field(form, "device");
    let owner = con
        .storage
        .list_devices(None)
        .await
        .map_err(|e| con.fail(c, e))?
        .into_iter()
        .find(|d| d.id == device)
        .map(|d| d.user);
    let Some(owner) = owner else {
        return Err(con
            .out_of_scope(c, me, "revoke_device", &format!("device={device}"))
            .await);
    };
    if !user_in_scope(con, c, me, &owner).await? {
        return Err(con
            .out_of_scope(c, me, "revoke_device", &format!("device={device}"))
            .await);
    }
    let r = admin::revoke_device(&*con.storage, device).await;
    admin_outcome(
        con,
        c,
        me,
        "revoke_device",
        &format!("device={device} user={owner}"),
        r,
    )
    .await
});

admin_handler!(admin_enroll_code, "enroll_code", |con, c, me, form| {
    let user = field(form, "user");
    if !user_in_scope(con, c, me, user).await? {
        return Err(con
            .out_of_scope(c, me, "enroll_code", &format!("user={user}"))
            .await);
    }
    let code = match admin::enroll_code(&*con.storage, &con.secret, user).await {
        Ok(code) => code,
        Err(e) => {
            return admin_outcome(con, c, me, "enroll_code", &format!("user={user}"), Err(e)).await;
        }
    };
    // The code itself is never logged: it is a credential until used.
    con.record(&me.user, c, "enroll_code", &format!("user={user}"), true)
        .await?;
    let server = con.server_url(c);
    let payload = enroll_link(&server, &code);
    let qr_svg = qr_svg(&payload).map_err(|e| {
        tracing::error!(error = %e, "console: QR code failed");
        con.message(
            c,
            Some(me),
            StatusCode::INTERNAL_SERVER_ERROR,
            c.t().server_error,
        )
    })?;
    Ok(page(
        StatusCode::OK,
        &EnrollPage {
            nav: con.nav(c, Some(me)),
            user: user.to_string(),
            server,
            code,
            qr_svg,
        },
    ))
});

impl Console {
    /// The address phones reach this server at: the configured public URL, else the
    /// request's own host (https when the console is behind TLS).
    fn server_url(&self, c: &Client) -> String {
        if let Some(u) = &self.public_url {
            return u.clone();
        }
        let scheme = if self.secure_cookie { "https" } else { "http" };
        format!(
            "{scheme}://{}",
            c.host.as_deref().unwrap_or("127.0.0.1:8640")
        )
    }
}

/// What an enrollment QR code holds ([`xiuhua_core::sync::link`]):
/// `xiuhua://enroll?server=URL&code=CODE`.
pub fn enroll_link(server: &str, code: &str) -> String {
    xiuhua_core::sync::link::enroll_link(server, code)
}

/// A QR code of `text` as an inline SVG element.
pub fn qr_svg(text: &str) -> Result<String, String> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| e.to_string())?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build();
    // Inline in HTML: drop the XML declaration.
    Ok(match svg.find("<svg") {
        Some(i) => svg[i..].to_string(),
        None => svg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_links_carry_the_server_and_the_code() {
        let l = enroll_link("http://192.168.1.5:8640", "7K3M-Q9XD-2HPA");
        assert_eq!(
            xiuhua_core::sync::link::parse_enroll_link(&l),
            Some(("http://192.168.1.5:8640".into(), "7K3M-Q9XD-2HPA".into()))
        );
        let svg = qr_svg(&l).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
    }

    #[test]
    fn times_are_shown_in_beijing_time() {
        assert_eq!(format_ms(0), "1970-01-01 08:00:00");
        assert_eq!(format_ms(1_764_633_600_000), "2025-12-02 08:00:00");
    }

    #[test]
    fn cookies_are_parsed_first_one_wins() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b = 2"));
        h.append(header::COOKIE, HeaderValue::from_static("a=3"));
        let c = parse_cookies(&h);
        assert_eq!(c.get("a").map(String::as_str), Some("1"));
        assert_eq!(c.get("b").map(String::as_str), Some("2"));
    }
}
