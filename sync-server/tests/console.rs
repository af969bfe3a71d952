//! The station console in-process (the server's router with the console merged, a real
//! SQLite database): cookies' attributes and security headers, CSRF, the account lock, the
//! one 404 for what is not the user's, logout, administration and its audit rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use tower::ServiceExt;
use xiuhua_server::admin::{self, GrantTarget};
use xiuhua_server::auth::Secret;
use xiuhua_server::config::Config;
use xiuhua_server::http::{AppState, Limits};
use xiuhua_server::server::app_router;
use xiuhua_server::storage::Storage;
use xiuhua_server::{SqliteStorage, console};

const PW: &str = "correct horse 12";

struct H {
    app: Router,
    storage: SqliteStorage,
    _dir: tempfile::TempDir,
}

async fn setup_with(cfg: Config) -> H {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path()).unwrap();
    let s: &dyn Storage = &storage;
    admin::add_district(s, "rd", "容东片区").await.unwrap();
    admin::add_community(s, "c1", "金湖社区", "rd")
        .await
        .unwrap();
    admin::add_community(s, "c2", "银湖社区", "rd")
        .await
        .unwrap();
    admin::add_grid(s, "g1", "第一网格", "c1").await.unwrap();
    admin::add_grid(s, "g2", "第二网格", "c1").await.unwrap();
    admin::add_grid(s, "g9", "第九网格", "c2").await.unwrap();
    admin::add_building(s, "g1", "1号楼").await.unwrap();
    for (u, n) in [
        ("u-admin", "管理员甲"),
        ("u-g1", "王伟"),
        ("u-g2", "刘洋"),
        ("u-staff", "赵敏"),
        ("u-lead", "李强"),
        ("u-new", "新人"),
    ] {
        admin::add_user(s, u, n).await.unwrap();
    }
    let g = |id: &str| GrantTarget::Grid(id.into());
    admin::grant(s, "u-admin", g("g1"), "管理员", &[])
        .await
        .unwrap();
    admin::grant(s, "u-admin", g("g2"), "管理员", &[])
        .await
        .unwrap();
    admin::grant(s, "u-g1", g("g1"), "网格员", &[])
        .await
        .unwrap();
    admin::grant(s, "u-g2", g("g2"), "网格员", &[])
        .await
        .unwrap();
    admin::grant(s, "u-lead", g("g1"), "楼门长", &["1号楼".into()])
        .await
        .unwrap();
    admin::grant(
        s,
        "u-staff",
        GrantTarget::Community("c1".into()),
        "社区工作者",
        &[],
    )
    .await
    .unwrap();
    for u in ["u-admin", "u-g1", "u-g2", "u-staff", "u-lead"] {
        admin::set_password(s, u, PW).await.unwrap();
    }
    let state = AppState::new(
        Arc::new(storage.clone()),
        Secret::from_bytes(&[7; 32]),
        Limits::from_config(&cfg),
    );
    H {
        app: app_router(state, &cfg),
        storage,
        _dir: dir,
    }
}

async fn setup() -> H {
    let mut cfg = Config::default();
    cfg.console.enabled = true;
    setup_with(cfg).await
}

/// A browser: keeps the cookies it is given.
struct Browser<'a> {
    app: &'a Router,
    cookies: HashMap<String, String>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("a csrf field in {} {}", self.status, self.body))
            + 19;
        self.body[at..].split('"').next().unwrap().to_string()
    }
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|v| v.starts_with(&format!("{name}=")))
    }
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map_or("", |v| v.to_str().unwrap())
    }
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl<'a> Browser<'a> {
    fn new(h: &'a H) -> Browser<'a> {
        Browser {
            app: &h.app,
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<String>) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "station.example:8640");
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(header::COOKIE, c.join("; "));
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.unwrap_or_default())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        for v in headers.get_all(header::SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        self.send("POST", path, Some(form(fields))).await
    }

    async fn try_login(&mut self, user: &str, password: &str) -> Answer {
        let f = self.get("/console/login").await;
        let csrf = f.csrf();
        self.post(
            "/console/login",
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await
    }

    async fn login(&mut self, user: &str) -> Answer {
        let r = self.try_login(user, PW).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{user}: {}", r.body);
        assert_eq!(r.location(), "/console/");
        let home = self.get("/console/").await;
        assert_eq!(home.status, StatusCode::OK);
        home
    }
}

#[tokio::test]
async fn cookies_are_http_only_strict_and_pages_carry_security_headers() {
    let h = setup().await;
    let mut b = Browser::new(&h);
    let f = b.get("/console/login").await;
    assert_eq!(f.status, StatusCode::OK);
    let pre = f.set_cookie(console::LOGIN_COOKIE).unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(pre.contains(attr), "{pre}");
    }
    assert!(!pre.contains("Secure"), "no TLS in front: {pre}");
    let csp = f.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(f.headers["x-frame-options"], "DENY");
    assert_eq!(f.headers["x-content-type-options"], "nosniff");
    assert_eq!(f.headers["referrer-policy"], "same-origin");
    assert!(f.body.contains("登录工作站"), "Chinese by default");
    assert!(!f.body.contains("<script"), "no script");
    let csrf = f.csrf();
    let r = b
        .post(
            "/console/login",
            &[("csrf", &csrf), ("user", "u-g1"), ("password", PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let session = r.set_cookie(console::SESSION_COOKIE).unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(attr), "{session}");
    }
    // The token is random and only its hash is stored.
    let token = b.cookies[console::SESSION_COOKIE].clone();
    assert_eq!(token.len(), 64);
    // The style sheet is served by the server itself.
    let css = b.get("/console/assets/console.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    // English on request, kept in a cookie.
    let l = b.get("/console/lang/en").await;
    assert_eq!(l.status, StatusCode::SEE_OTHER);
    assert!(b.get("/console/").await.body.contains("My grids"));

    // Behind TLS (the configuration says so): Secure.
    let mut cfg = Config::default();
    cfg.console.enabled = true;
    cfg.console.secure_cookie = true;
    let tls = setup_with(cfg).await;
    let mut b = Browser::new(&tls);
    let f = b.get("/console/login").await;
    assert!(
        f.set_cookie(console::LOGIN_COOKIE)
            .unwrap()
            .contains("; Secure")
    );
    let csrf = f.csrf();
    let r = b
        .post(
            "/console/login",
            &[("csrf", &csrf), ("user", "u-g1"), ("password", PW)],
        )
        .await;
    assert!(
        r.set_cookie(console::SESSION_COOKIE)
            .unwrap()
            .contains("; Secure")
    );
}

#[tokio::test]
async fn the_console_is_off_unless_configured() {
    let h = setup_with(Config::default()).await;
    let mut b = Browser::new(&h);
    assert_eq!(b.get("/console/login").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn forms_posted_without_their_csrf_token_are_refused() {
    let h = setup().await;
    let mut b = Browser::new(&h);
    // Login without the token, with a wrong one, without the pre-login cookie.
    b.get("/console/login").await;
    let r = b
        .post("/console/login", &[("user", "u-admin"), ("password", PW)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie(console::SESSION_COOKIE).is_none());
    let r = b
        .post(
            "/console/login",
            &[("csrf", "00ff"), ("user", "u-admin"), ("password", PW)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut fresh = Browser::new(&h);
    let csrf = b.get("/console/login").await.csrf();
    let r = fresh
        .post(
            "/console/login",
            &[("csrf", &csrf), ("user", "u-admin"), ("password", PW)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the token is bound to the cookie"
    );
    // Signed in: an administration form without the token changes nothing.
    b.login("u-admin").await;
    let r = b
        .post(
            "/console/admin/users",
            &[("id", "u-evil"), ("name", "坏人")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another session's token is not this one's.
    let mut other = Browser::new(&h);
    let other_csrf = other.login("u-admin").await.csrf();
    let r = b
        .post(
            "/console/admin/users",
            &[("csrf", &other_csrf), ("id", "u-evil"), ("name", "坏人")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b.post("/console/logout", &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let users = h.storage.list_users().await.unwrap();
    assert!(!users.iter().any(|u| u.id == "u-evil"));
    let log = h.storage.audit_log(None, 100).await.unwrap();
    let refused = log
        .iter()
        .filter(|e| !e.ok && e.detail.contains("CSRF"))
        .count();
    assert_eq!(refused, 3 + 3, "{log:?}");
    // With its token the same form works.
    let csrf = b.get("/console/admin").await.csrf();
    let r = b
        .post(
            "/console/admin/users",
            &[("csrf", &csrf), ("id", "u-ok"), ("name", "好人")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        h.storage
            .list_users()
            .await
            .unwrap()
            .iter()
            .any(|u| u.id == "u-ok")
    );
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_account_even_for_the_right_one() {
    let h = setup().await;
    let mut b = Browser::new(&h);
    for i in 1..=4 {
        let r = b.try_login("u-g1", "wrong password").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "failure {i}");
        assert!(r.body.contains("用户名或密码错误"));
    }
    let fifth = b.try_login("u-g1", "wrong password").await;
    assert_eq!(fifth.status, StatusCode::UNAUTHORIZED);
    assert!(fifth.body.contains("账户已锁定"), "{}", fifth.body);
    let sixth = b.try_login("u-g1", PW).await;
    assert_eq!(sixth.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(sixth.set_cookie(console::SESSION_COOKIE).is_none());
    assert!(sixth.body.contains("账户已锁定"));
    // Other accounts are not locked (a success clears the address's failures).
    Browser::new(&h).login("u-g2").await;
    // An unknown user fails the same way as a wrong password (and is audited).
    let r = b.try_login("u-ghost", PW).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("用户名或密码错误"));
    let log = h.storage.audit_log(None, 100).await.unwrap();
    let of = |user: &str| log.iter().filter(|e| e.user == user).collect::<Vec<_>>();
    let g1 = of("u-g1");
    assert_eq!(g1.len(), 6);
    assert!(g1.iter().all(|e| !e.ok && e.action == "login"));
    assert_eq!(g1[0].detail, "refused: account locked");
    assert_eq!(
        g1.iter()
            .filter(|e| e.detail == "refused: wrong password")
            .count(),
        5
    );
    assert_eq!(of("u-ghost")[0].detail, "refused: unknown user");
    assert!(of("u-g2")[0].ok);
    assert!(
        !log.iter().any(|e| e.detail.contains(PW)),
        "no password in the log"
    );
    // Per address: after five more failures from this address it must wait, whoever it
    // names.
    let mut b = Browser::new(&h);
    for _ in 0..5 {
        let r = b.try_login("u-ghost", "guess").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = b.try_login("u-staff", PW).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("此地址登录尝试过多"));
}

#[tokio::test]
async fn what_is_not_the_users_is_the_same_404_as_what_does_not_exist() {
    let h = setup().await;
    let mut g2 = Browser::new(&h);
    let home = g2.login("u-g2").await;
    assert!(home.body.contains("/console/grids/g2"));
    assert!(!home.body.contains("/console/grids/g1"));
    let theirs = g2.get("/console/grids/g1").await;
    let missing = g2.get("/console/grids/no-such-grid").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.body, missing.body);
    assert_eq!(g2.get("/console/grids/g2").await.status, StatusCode::OK);
    // Administration and the audit log: 管理员 only, the same 404 for anyone else.
    for path in ["/console/admin", "/console/audit", "/console/nothing-here"] {
        let r = g2.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.body, missing.body, "{path}");
    }
    let csrf = home.csrf();
    let r = g2
        .post(
            "/console/admin/users",
            &[("csrf", &csrf), ("id", "u-x"), ("name", "某人")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A community role sees every grid of its community.
    let mut staff = Browser::new(&h);
    let home = staff.login("u-staff").await;
    assert!(home.body.contains("/console/grids/g1") && home.body.contains("/console/grids/g2"));
    assert_eq!(
        staff.get("/console/grids/g9").await.status,
        StatusCode::NOT_FOUND
    );
    // A 楼门长 has no grid in the console.
    let mut lead = Browser::new(&h);
    let home = lead.login("u-lead").await;
    assert!(home.body.contains("id=\"no-grids\""));
    assert_eq!(
        lead.get("/console/grids/g1").await.status,
        StatusCode::NOT_FOUND
    );
    // Without a session: to the login page, whatever the grid.
    let mut anon = Browser::new(&h);
    for path in [
        "/console/",
        "/console/grids/g1",
        "/console/grids/nope",
        "/console/admin",
    ] {
        let r = anon.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.location(), "/console/login");
    }
}

#[tokio::test]
async fn logout_ends_the_session_on_the_server() {
    let h = setup().await;
    let mut b = Browser::new(&h);
    let home = b.login("u-g1").await;
    let token = b.cookies[console::SESSION_COOKIE].clone();
    let r = b.post("/console/logout", &[("csrf", &home.csrf())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.set_cookie(console::SESSION_COOKIE)
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(b.get("/console/").await.status, StatusCode::SEE_OTHER);
    // The old cookie, replayed, opens nothing.
    let mut replay = Browser::new(&h);
    replay
        .cookies
        .insert(console::SESSION_COOKIE.into(), token.clone());
    assert_eq!(replay.get("/console/").await.status, StatusCode::SEE_OTHER);
    let policy = xiuhua_server::console::rules::SessionPolicy::DEFAULT;
    let hash = console::session_hash(&token);
    assert_eq!(
        h.storage
            .touch_session(&hash, xiuhua_server::now_ms(), &policy)
            .await
            .unwrap(),
        None
    );
    let log = h.storage.audit_log(None, 10).await.unwrap();
    assert_eq!(log[0].action, "logout");
    assert_eq!(log[0].user, "u-g1");
    // A new password ends every session of the user.
    let mut c = Browser::new(&h);
    c.login("u-g1").await;
    admin::set_password(&h.storage, "u-g1", "another password 1")
        .await
        .unwrap();
    assert_eq!(c.get("/console/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn administration_acts_on_the_admins_grids_and_is_audited() {
    let h = setup().await;
    let mut b = Browser::new(&h);
    b.login("u-admin").await;
    let page = b.get("/console/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    // A building on a grid of theirs; not on another.
    let r = b
        .post(
            "/console/admin/buildings",
            &[("csrf", &csrf), ("grid", "g2"), ("name", "5号楼")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("5号楼"));
    let r = b
        .post(
            "/console/admin/buildings",
            &[("csrf", &csrf), ("grid", "g9"), ("name", "6号楼")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Grants: on their grid; a community only when all its grids are theirs.
    let r = b
        .post(
            "/console/admin/grants",
            &[
                ("csrf", &csrf),
                ("user", "u-new"),
                ("grid", "g1"),
                ("role", "网格员"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = b
        .post(
            "/console/admin/grants",
            &[
                ("csrf", &csrf),
                ("user", "u-new"),
                ("community", "c2"),
                ("role", "网格员"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = b
        .post(
            "/console/admin/grants",
            &[
                ("csrf", &csrf),
                ("user", "u-new"),
                ("grid", "g1"),
                ("role", "楼门长"),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "a 楼门长 needs buildings"
    );
    let grants = h.storage.list_grants().await.unwrap();
    assert!(grants.iter().any(|g| g.user == "u-new" && g.grid == "g1"));
    assert!(!grants.iter().any(|g| g.user == "u-new" && g.grid == "g9"));
    // An enrollment code: shown as text and as a QR code of the server and the code.
    let r = b
        .post(
            "/console/admin/enroll-code",
            &[("csrf", &csrf), ("user", "u-new")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("<svg"));
    assert!(r.body.contains("http://station.example:8640"));
    let at = r.body.find("id=\"code\">").unwrap() + 10;
    let code: String = r.body[at..].chars().take(14).collect();
    assert!(
        xiuhua_server::auth::normalize_code(&code).is_some(),
        "{code}"
    );
    // A user with no grant on the admin's grids: the same 404.
    let r = b
        .post(
            "/console/admin/enroll-code",
            &[("csrf", &csrf), ("user", "u-lead9")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Every action is in the audit log, which the admin sees; the code is not.
    let log = h.storage.audit_log(None, 100).await.unwrap();
    let actions: Vec<(&str, bool)> = log
        .iter()
        .filter(|e| e.user == "u-admin")
        .map(|e| (e.action.as_str(), e.ok))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("enroll_code", false),
            ("enroll_code", true),
            ("grant", false),
            ("grant", false),
            ("grant", true),
            ("add_building", false),
            ("add_building", true),
            ("login", true),
        ]
    );
    assert!(!log.iter().any(|e| e.detail.contains(&code)));
    let audit = b.get("/console/audit").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit.body.contains("enroll_code") && audit.body.contains("user=u-new"));
}
