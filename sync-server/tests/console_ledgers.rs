//! The console's ledgers (民情台账, 政务台账), their exports and the statistics page,
//! in-process (the server's router with the console merged, a real SQLite database), with
//! data pushed by phones (core stores whose clocks the test sets) through the storage's
//! own push path, so the projection rows are the ones a real sync writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use calamine::{Data, Reader, Xlsx};
use serde_bytes::ByteBuf;
use tower::ServiceExt;
use xiuhua_core::store::OrderFromRecord;
use xiuhua_core::sync::proto::{DocChanges, PushRequest};
use xiuhua_core::{
    Actor, Address, Category, Gender, Level, NewHousehold, NewMember, NewRecord, NewTask, NewVisit,
    Relation, Role, Store, TaskAction,
};
use xiuhua_server::SqliteStorage;
use xiuhua_server::access::Caller;
use xiuhua_server::admin::{self, GrantTarget};
use xiuhua_server::auth::Secret;
use xiuhua_server::config::Config;
use xiuhua_server::http::{AppState, Limits};
use xiuhua_server::ingest;
use xiuhua_server::server::app_router;
use xiuhua_server::storage::{DeviceStanding, Storage};

const PW: &str = "correct horse 12";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// 00:00 of a day in Beijing, ms.
fn cst(y: i32, m: u32, d: u32) -> i64 {
    xiuhua_server::storage::console::day_start_ms(y, m, d).unwrap()
}

struct H {
    app: Router,
    storage: SqliteStorage,
    _dir: tempfile::TempDir,
}

/// The directory of `tests/console.rs`: g1, g2 in community c1, g9 in c2; u-g1 网格员 of
/// g1, u-g2 of g2, u-staff 社区工作者 on c1, u-lead 楼门长 in g1.
async fn setup() -> H {
    let mut cfg = Config::default();
    cfg.console.enabled = true;
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
        ("u-g1", "王伟"),
        ("u-g2", "刘洋"),
        ("u-staff", "赵敏"),
        ("u-lead", "李强"),
    ] {
        admin::add_user(s, u, n).await.unwrap();
    }
    let g = |id: &str| GrantTarget::Grid(id.into());
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
    for u in ["u-g1", "u-g2", "u-staff", "u-lead"] {
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

// ----- phones -----

/// A phone: a core store with a clock the test moves, enrolled on the server.
struct Phone {
    store: Store,
    clock: Arc<AtomicI64>,
    caller: Caller,
}

impl Phone {
    async fn new(s: &dyn Storage, user: &str, name: &str, device: &str) -> Phone {
        let now = xiuhua_server::now_ms();
        let code = format!("code-{device}");
        s.add_enroll_code(user, &code, now + 60_000, now)
            .await
            .unwrap();
        s.enroll(
            &code,
            device,
            "phone",
            &format!("rt-{device}"),
            i64::MAX / 2,
            now,
        )
        .await
        .unwrap()
        .expect("enrolled");
        let caller = match s.device_standing(device, user, now).await.unwrap() {
            DeviceStanding::Active(c) => c,
            other => panic!("{other:?}"),
        };
        let mut store =
            Store::open_in_memory(Actor::new(user, name, Role::GridMember, device).unwrap())
                .unwrap();
        let clock = Arc::new(AtomicI64::new(now));
        let c = clock.clone();
        store.set_time_source(move || c.load(Ordering::SeqCst));
        Phone {
            store,
            clock,
            caller,
        }
    }

    fn at(&mut self, ms: i64) -> &mut Store {
        self.clock.store(ms, Ordering::SeqCst);
        &mut self.store
    }

    /// Pushes the outbox as one request.
    async fn push(&mut self, s: &dyn Storage) {
        let entries = self.store.outbox(1_000_000).unwrap();
        let mut by_doc: BTreeMap<String, Vec<ByteBuf>> = BTreeMap::new();
        for e in &entries {
            by_doc
                .entry(e.doc.clone())
                .or_default()
                .push(ByteBuf::from(e.change.clone()));
        }
        self.store
            .ack_outbox(&entries.iter().map(|e| e.id).collect::<Vec<_>>())
            .unwrap();
        let req = PushRequest {
            docs: by_doc
                .into_iter()
                .map(|(doc, changes)| DocChanges { doc, changes })
                .collect(),
        };
        let parsed = ingest::parse(&self.caller.own_devices(), req, 100_000).unwrap();
        s.push(&self.caller, parsed).await.unwrap();
    }
}

fn record(grid: &str, category: Category, description: &str) -> NewRecord {
    NewRecord {
        grid: grid.into(),
        category,
        description: description.into(),
        reporter: "张阿姨".into(),
        household: None,
        building: Some("1号楼".into()),
        place: "楼道".into(),
    }
}

fn household(grid: &str, room: &str) -> NewHousehold {
    NewHousehold {
        address: Address::new(grid, "1号楼", "1单元", room).unwrap(),
        members: vec![NewMember {
            name: "刘芳".into(),
            gender: Gender::Female,
            birth_year: 1950,
            phone: Some("13812345678".into()),
            id_number: None,
            relation: Relation::Head,
            tags: vec![],
        }],
        tags: vec![],
        note: String::new(),
    }
}

fn visit() -> NewVisit {
    NewVisit {
        purpose: "入户走访".into(),
        note: String::new(),
        follow_up: None,
    }
}

/// What the phones made (ids), all in the past of the real clock.
struct Seeded {
    /// g1, reported 2026-12-01 09:00, its description starting with a formula.
    r_dec: String,
    /// g1, 2026-11-10.
    r_nov: String,
    /// g2, 2026-12-01.
    r_g2: String,
    /// g1, from `r_dec`, closed on time, rated 5.
    t_closed: String,
    /// g1, 2026-12-02, open and past its deadline.
    t_overdue: String,
}

const FORMULA: &str = "=HYPERLINK(\"http://x\")请联系13812345678楼道堆放杂物";

async fn seed(h: &H) -> Seeded {
    let s: &dyn Storage = &h.storage;
    let mut g1 = Phone::new(s, "u-g1", "王伟", "dev-g1").await;
    let mut g2 = Phone::new(s, "u-g2", "刘洋", "dev-g2").await;

    // In the phone's own order of time (its clock is hybrid: it never goes back). Households
    // of g1: one since October, one registered in November that moves out on 2026-12-01;
    // visits in November and December.
    let old = g1
        .at(cst(2026, 10, 5) + 10 * HOUR)
        .create_household(household("g1", "101"))
        .unwrap();
    let r_nov = g1
        .at(cst(2026, 11, 10) + 10 * HOUR)
        .create_record(record("g1", Category::Repair, "楼道灯坏了"))
        .unwrap();
    let moving = g1
        .at(cst(2026, 11, 20) + 10 * HOUR)
        .create_household(household("g1", "102"))
        .unwrap();
    g1.at(cst(2026, 11, 21) + 10 * HOUR)
        .add_visit(&old, visit())
        .unwrap();
    g1.at(cst(2026, 11, 22) + 10 * HOUR)
        .add_visit(&moving, visit())
        .unwrap();
    g1.at(cst(2026, 12, 1) + 8 * HOUR)
        .add_visit(&old, visit())
        .unwrap();
    g1.at(cst(2026, 12, 1) + 9 * HOUR)
        .set_household_moved_out(&moving, true)
        .unwrap();
    let r_dec = g1
        .at(cst(2026, 12, 1) + 9 * HOUR)
        .create_record(record("g1", Category::Environment, FORMULA))
        .unwrap();
    let t_closed = g1
        .at(cst(2026, 12, 1) + 10 * HOUR)
        .order_from_record(
            &r_dec,
            OrderFromRecord {
                level: Level::Doorstep,
                title: Some("清理楼道杂物".into()),
                assignee: Some("u-g1".into()),
                deadline: Some(cst(2026, 12, 3)),
            },
        )
        .unwrap();
    g1.at(cst(2026, 12, 1) + 11 * HOUR)
        .task_action(&t_closed, TaskAction::Accept)
        .unwrap();
    g1.at(cst(2026, 12, 1) + 15 * HOUR)
        .task_action(
            &t_closed,
            TaskAction::Complete {
                result: "已清理".into(),
            },
        )
        .unwrap();
    g1.at(cst(2026, 12, 1) + 17 * HOUR)
        .task_action(
            &t_closed,
            TaskAction::Rate {
                score: 5,
                comment: "满意".into(),
            },
        )
        .unwrap();
    let created = cst(2026, 12, 2) + 9 * HOUR;
    let t_overdue = g1
        .at(created)
        .create_task(NewTask {
            grid: "g1".into(),
            level: Level::PartyMass,
            category: Category::Service,
            title: "代办低保复审".into(),
            description: String::new(),
            household: Some(old.clone()),
            source_record: None,
            assignee: None,
            deadline: Some(created + HOUR),
        })
        .unwrap();
    g1.push(s).await;

    let r_g2 = g2
        .at(cst(2026, 12, 1) + 12 * HOUR)
        .create_record(record("g2", Category::Safety, "第二网格的隐患"))
        .unwrap();
    g2.push(s).await;
    Seeded {
        r_dec,
        r_nov,
        r_g2,
        t_closed,
        t_overdue,
    }
}

// ----- a browser -----

struct Browser<'a> {
    app: &'a Router,
    cookies: HashMap<String, String>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
    body: String,
}

impl Answer {
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").unwrap() + 19;
        self.body[at..].split('"').next().unwrap().to_string()
    }
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
    /// The text of the element with this id.
    fn text_of(&self, id: &str) -> String {
        let at = self
            .body
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in {}", self.body));
        let start = at + self.body[at..].find('>').unwrap() + 1;
        let end = start + self.body[start..].find('<').unwrap();
        self.body[start..end].to_string()
    }
    /// The rows of the table with this id: each row's cell texts.
    fn table(&self, id: &str) -> Vec<Vec<String>> {
        let at = self.body.find(&format!("<table id=\"{id}\"")).unwrap();
        let end = at + self.body[at..].find("</table>").unwrap();
        let body = &self.body[at..end];
        let Some(tb) = body.find("<tbody>") else {
            return Vec::new();
        };
        body[tb..]
            .split("<tr>")
            .skip(1)
            .map(|row| {
                row.split("<td>")
                    .skip(1)
                    .map(|c| c.split("</td>").next().unwrap().to_string())
                    .collect()
            })
            .collect()
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
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    async fn login(&mut self, user: &str) {
        let f = self.get("/console/login").await;
        let csrf = f.csrf();
        let r = self
            .send(
                "POST",
                "/console/login",
                Some(form(&[("csrf", &csrf), ("user", user), ("password", PW)])),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{user}: {}", r.body);
    }
}

const DEC: &str = "from=2026-12-01&to=2026-12-31";

fn ids(rows: &[Vec<String>]) -> Vec<&str> {
    rows.iter().map(|r| r[0].as_str()).collect()
}

// ----- the cases -----

#[tokio::test]
async fn ledger_pages_show_the_ranges_rows_of_the_users_grids_and_other_grids_are_404() {
    let h = setup().await;
    let d = seed(&h).await;
    let mut g1 = Browser::new(&h);
    g1.login("u-g1").await;

    let dec = g1.get(&format!("/console/ledgers/records?{DEC}")).await;
    assert_eq!(dec.status, StatusCode::OK, "{}", dec.body);
    assert!(dec.body.contains("<th>上报时间</th>"), "Chinese headers");
    assert!(
        dec.body.contains("href=\"/console/ledgers/records\""),
        "in the navigation"
    );
    let rows = dec.table("ledger");
    assert_eq!(ids(&rows), vec![d.r_dec.as_str()], "December, g1 only");
    let r = &rows[0];
    assert_eq!(r[1], "第一网格");
    assert_eq!(r[2], "2026-12-01 09:00:00", "Beijing time");
    assert_eq!((r[3].as_str(), r[4].as_str()), ("环境卫生", "已办结"));
    assert!(
        r[8].contains("138****5678") && !r[8].contains("13812345678"),
        "{}",
        r[8]
    );
    assert!(
        r[8].starts_with("=HYPERLINK(") && !r[8].contains('"'),
        "escaped HTML: {}",
        r[8]
    );
    assert_eq!((r[9].as_str(), r[10].as_str()), ("1", "0"));
    assert_eq!(r[11], "2026-12-01 17:00:00", "closed with its rated task");
    assert_eq!(dec.text_of("row-count"), "共 1 条");

    let nov = g1
        .get("/console/ledgers/records?from=2026-11-01&to=2026-11-30&grid=g1")
        .await;
    assert_eq!(ids(&nov.table("ledger")), vec![d.r_nov.as_str()]);
    // The last day is included, whole: 2026-12-01 through 2026-12-01.
    let one_day = g1
        .get("/console/ledgers/records?from=2026-12-01&to=2026-12-01")
        .await;
    assert_eq!(ids(&one_day.table("ledger")), vec![d.r_dec.as_str()]);
    let before = g1
        .get("/console/ledgers/records?from=2026-11-11&to=2026-11-30")
        .await;
    assert!(before.table("ledger").is_empty());
    assert!(before.body.contains("id=\"empty\""));

    // The 政务台账 of December: both tasks, by creation.
    let tasks = g1.get(&format!("/console/ledgers/tasks?{DEC}")).await;
    assert_eq!(tasks.status, StatusCode::OK);
    let rows = tasks.table("ledger");
    assert_eq!(ids(&rows), vec![d.t_closed.as_str(), d.t_overdue.as_str()]);
    assert_eq!(rows[0][5], "上门办");
    assert_eq!(rows[0][6], "已评价");
    assert_eq!(rows[0][13], "是", "done before its deadline");
    assert_eq!(rows[0][15], "5");
    assert_eq!(rows[0][18], d.r_dec);
    assert_eq!(rows[1][6], "已点单");
    assert!(rows[1][14].parse::<i64>().unwrap() >= 1, "days overdue");
    assert!(tasks.body.contains("<dt>已超期</dt><dd>1</dd>"), "totals");
    assert!(tasks.body.contains("<dt>按期办结率</dt><dd>100.0%</dd>"));

    // Another grid, or one that does not exist: the one 404, audited.
    let missing = g1.get("/console/nothing-here").await;
    for path in [
        format!("/console/ledgers/records?{DEC}&grid=g2"),
        format!("/console/ledgers/tasks?{DEC}&grid=g9"),
        format!("/console/ledgers/records?{DEC}&grid=nope"),
        "/console/stats?grid=g2".to_string(),
    ] {
        let r = g1.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.body, missing.body, "{path}");
    }
    let log = h.storage.audit_log(None, 100).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "ledger_records" && !e.ok && e.detail.contains("grid=g2"))
    );

    // A community role sees both grids, and each alone.
    let mut staff = Browser::new(&h);
    staff.login("u-staff").await;
    let both = staff.get(&format!("/console/ledgers/records?{DEC}")).await;
    let mut got = ids(&both.table("ledger"))
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    got.sort();
    let mut want = vec![d.r_dec.clone(), d.r_g2.clone()];
    want.sort();
    assert_eq!(got, want);
    let g2 = staff
        .get(&format!("/console/ledgers/records?{DEC}&grid=g2"))
        .await;
    assert_eq!(ids(&g2.table("ledger")), vec![d.r_g2.as_str()]);
    assert_eq!(g2.table("ledger")[0][1], "第二网格");
    // A 楼门长 has no grid here: an empty ledger, not another's rows.
    let mut lead = Browser::new(&h);
    lead.login("u-lead").await;
    let r = lead.get(&format!("/console/ledgers/records?{DEC}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.table("ledger").is_empty() && r.body.contains("id=\"no-grids\""));
    // Without a session: to the login page.
    let mut anon = Browser::new(&h);
    let r = anon.get("/console/ledgers/records").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    // English on request.
    g1.get("/console/lang/en").await;
    let en = g1.get(&format!("/console/ledgers/records?{DEC}")).await;
    assert!(en.body.contains("<th>Reported</th>") && !en.body.contains("<th>上报时间</th>"));
}

#[tokio::test]
async fn bad_query_values_are_a_clear_400_page() {
    let h = setup().await;
    let mut b = Browser::new(&h);
    b.login("u-g1").await;
    for (path, says) in [
        ("/console/ledgers/records?from=2026-02-30", "日期 from"),
        ("/console/ledgers/records?to=12/01/2026", "日期 to"),
        (
            "/console/ledgers/tasks?from=2026-12-05&to=2026-12-01",
            "开始日期晚于结束日期",
        ),
        ("/console/ledgers/records?page=0", "页码"),
        ("/console/ledgers/records?page=abc", "页码"),
        ("/console/ledgers/tasks?format=pdf", "导出格式"),
        ("/console/stats?from=2026-13", "月份 from"),
        ("/console/stats?from=2026-12&to=2026-01", "个月"),
        ("/console/stats?from=2000-01&to=2026-01", "个月"),
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        assert!(r.text_of("message").contains(says), "{path}: {}", r.body);
    }
    // Empty fields (a form submitted as is) are absent values, not errors.
    let r = b
        .get("/console/ledgers/records?from=&to=&grid=&page=&format=")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn ledgers_are_paged_by_100() {
    let h = setup().await;
    let s: &dyn Storage = &h.storage;
    let mut phone = Phone::new(s, "u-g2", "刘洋", "dev-g2").await;
    for i in 0..105 {
        phone
            .at(cst(2026, 11, 1) + i * HOUR)
            .create_record(record("g2", Category::Policy, &format!("咨询 {i}")))
            .unwrap();
    }
    phone.push(s).await;
    let mut b = Browser::new(&h);
    b.login("u-g2").await;
    let path = "/console/ledgers/records?from=2026-11-01&to=2026-11-30";
    let p1 = b.get(path).await;
    assert_eq!(p1.table("ledger").len(), 100);
    assert_eq!(p1.text_of("row-count"), "共 105 条");
    assert_eq!(p1.text_of("page-of"), "第 1 / 2 页");
    assert!(!p1.body.contains("id=\"prev\""));
    let next = p1.body.split("id=\"next\"").next().unwrap();
    let href = next
        .rsplit("href=\"")
        .next()
        .unwrap()
        .trim_end_matches("\" ");
    assert_eq!(href.replace("&#38;", "&"), format!("{path}&page=2"));
    let p2 = b.get(&format!("{path}&page=2")).await;
    let rows = p2.table("ledger");
    assert_eq!(rows.len(), 5);
    assert!(rows[4][8].contains("咨询 104"), "the last by report time");
    assert!(p2.body.contains("id=\"prev\"") && !p2.body.contains("id=\"next\""));
    // The export is not paged.
    let x = b.get(&format!("{path}&format=csv")).await;
    let text = String::from_utf8(x.bytes).unwrap();
    assert_eq!(text.lines().count(), 106, "header and 105 rows");
}

fn cell_text(d: &Data) -> String {
    match d {
        Data::String(s) => s.clone(),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Empty => String::new(),
        other => format!("{other:?}"),
    }
}

/// The figure of a 合计 sheet's line with this label.
fn figure(sheet: &calamine::Range<Data>, label: &str) -> Data {
    sheet
        .rows()
        .find(|r| r.first().is_some_and(|c| cell_text(c) == label))
        .unwrap_or_else(|| panic!("no line {label}"))[1]
        .clone()
}

/// The Excel serial of a time in ms, in Beijing time.
fn serial(ms: i64) -> f64 {
    (ms + 8 * HOUR) as f64 / DAY as f64 + 25_569.0
}

#[tokio::test]
async fn xlsx_exports_parse_back_with_headers_rows_dates_and_totals() {
    let h = setup().await;
    let d = seed(&h).await;
    let mut b = Browser::new(&h);
    b.login("u-g1").await;

    let x = b
        .get(&format!("/console/ledgers/records?{DEC}&format=xlsx"))
        .await;
    assert_eq!(x.status, StatusCode::OK, "{}", x.body);
    assert_eq!(
        x.header(header::CONTENT_TYPE),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert_eq!(
        x.header(header::CONTENT_DISPOSITION),
        "attachment; filename=\"records-ledger-2026-12.xlsx\"; \
         filename*=UTF-8''%E6%B0%91%E6%83%85%E5%8F%B0%E8%B4%A6-2026-12.xlsx"
    );
    let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(x.bytes.clone())).unwrap();
    assert_eq!(wb.sheet_names(), vec!["民情台账", "合计"]);
    let sheet = wb.worksheet_range("民情台账").unwrap();
    let rows: Vec<&[Data]> = sheet.rows().collect();
    assert_eq!(rows.len(), 2, "headers and one record");
    let headers: Vec<String> = rows[0].iter().map(cell_text).collect();
    assert_eq!(
        headers,
        vec![
            "编号",
            "网格",
            "上报时间",
            "类别",
            "状态",
            "反映人",
            "楼栋",
            "地点",
            "摘要",
            "代办数",
            "未办结代办",
            "办结时间",
            "登记人"
        ]
    );
    let r = rows[1];
    assert_eq!(cell_text(&r[0]), d.r_dec);
    match &r[2] {
        Data::DateTime(t) => {
            assert!((t.as_f64() - serial(cst(2026, 12, 1) + 9 * HOUR)).abs() < 1e-6)
        }
        other => panic!("a real date, not {other:?}"),
    }
    // The formula is a string cell: it never runs; the phone number is masked.
    match &r[8] {
        Data::String(s) => {
            assert!(s.starts_with("=HYPERLINK(\"http://x\")"), "{s}");
            assert!(s.contains("138****5678") && !s.contains("13812345678"));
        }
        other => panic!("a string cell, not {other:?}"),
    }
    assert_eq!(r[9], Data::Float(1.0));
    let formulas = wb.worksheet_formula("民情台账").unwrap();
    assert!(
        formulas.rows().flatten().all(String::is_empty),
        "no formula anywhere"
    );
    let totals = wb.worksheet_range("合计").unwrap();
    assert_eq!(figure(&totals, "民情条数"), Data::Float(1.0));
    assert_eq!(figure(&totals, "环境卫生"), Data::Float(1.0));
    assert_eq!(figure(&totals, "矛盾纠纷"), Data::Float(0.0));
    assert_eq!(figure(&totals, "已办结"), Data::Float(1.0));
    assert_eq!(cell_text(&figure(&totals, "导出人")), "王伟 (u-g1)");
    assert_eq!(
        cell_text(&figure(&totals, "时间范围")),
        "2026-12-01 至 2026-12-31"
    );

    // The 政务台账 of one grid: its totals.
    let x = b
        .get(&format!("/console/ledgers/tasks?{DEC}&grid=g1&format=xlsx"))
        .await;
    const ATTR: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.');
    assert_eq!(
        x.header(header::CONTENT_DISPOSITION),
        format!(
            "attachment; filename=\"tasks-ledger-g1-2026-12.xlsx\"; filename*=UTF-8''{}",
            percent_encoding::utf8_percent_encode("政务台账-第一网格-2026-12.xlsx", ATTR)
        )
    );
    let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(x.bytes)).unwrap();
    let sheet = wb.worksheet_range("政务台账").unwrap();
    let rows: Vec<&[Data]> = sheet.rows().collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(cell_text(&rows[0][13]), "是否按期");
    assert_eq!(cell_text(&rows[1][0]), d.t_closed);
    assert_eq!(cell_text(&rows[2][0]), d.t_overdue);
    assert_eq!(rows[1][15], Data::Float(5.0));
    match &rows[1][9] {
        Data::DateTime(t) => assert!((t.as_f64() - serial(cst(2026, 12, 3))).abs() < 1e-6),
        other => panic!("the deadline as a date, not {other:?}"),
    }
    let totals = wb.worksheet_range("合计").unwrap();
    assert_eq!(figure(&totals, "代办件数"), Data::Float(2.0));
    assert_eq!(figure(&totals, "已超期"), Data::Float(1.0));
    assert_eq!(figure(&totals, "按期办结率"), Data::Float(1.0));
    assert_eq!(figure(&totals, "平均满意度"), Data::Float(5.0));
    assert_eq!(figure(&totals, "已点单"), Data::Float(1.0));
    assert_eq!(figure(&totals, "已评价"), Data::Float(1.0));
    assert_eq!(figure(&totals, "党群办"), Data::Float(1.0));

    // Each export is audited: ledger, grids, range.
    let log = h.storage.audit_log(None, 100).await.unwrap();
    let exports: Vec<&str> = log
        .iter()
        .filter(|e| e.action == "export" && e.user == "u-g1" && e.ok)
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(
        exports,
        vec![
            "ledger=tasks format=xlsx grids=g1 range=2026-12-01..2026-12-31 rows=2",
            "ledger=records format=xlsx grids=g1 range=2026-12-01..2026-12-31 rows=1",
        ]
    );
}

#[tokio::test]
async fn csv_exports_have_a_bom_the_rows_and_no_live_formula() {
    let h = setup().await;
    let d = seed(&h).await;
    let mut b = Browser::new(&h);
    b.login("u-staff").await;
    let x = b
        .get(&format!("/console/ledgers/records?{DEC}&format=csv"))
        .await;
    assert_eq!(x.status, StatusCode::OK);
    assert_eq!(x.header(header::CONTENT_TYPE), "text/csv; charset=utf-8");
    assert!(
        x.header(header::CONTENT_DISPOSITION)
            .contains("filename=\"records-ledger-2026-12.csv\"")
    );
    assert_eq!(&x.bytes[..3], b"\xEF\xBB\xBF", "a UTF-8 BOM");
    let mut rd = csv::Reader::from_reader(&x.bytes[3..]);
    let headers: Vec<String> = rd.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(headers[..3], ["编号", "网格", "上报时间"]);
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let mine = rows.iter().find(|r| &r[0] == d.r_dec.as_str()).unwrap();
    assert_eq!(&mine[2], "2026-12-01 09:00:00");
    assert!(
        mine[8].starts_with("'=HYPERLINK(\"http://x\")"),
        "neutralised: {}",
        &mine[8]
    );
    assert!(!mine[8].contains("13812345678"));
    assert!(rows.iter().any(|r| &r[0] == d.r_g2.as_str()));
    let log = h.storage.audit_log(None, 10).await.unwrap();
    assert!(log.iter().any(|e| e.action == "export"
        && e.detail
            == "ledger=records format=csv grids=g1,g2 range=2026-12-01..2026-12-31 rows=2"));
}

#[tokio::test]
async fn statistics_count_coverage_against_the_register_and_draw_charts() {
    let h = setup().await;
    seed(&h).await;
    let mut b = Browser::new(&h);
    b.login("u-g1").await;
    let r = b
        .get("/console/stats?from=2026-10&to=2026-12&grid=g1")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("<svg") && r.body.contains("id=\"coverage-chart\""));
    assert!(r.body.contains("id=\"tasks-chart\""));
    assert!(!r.body.contains("<script"));
    let rows = r.table("stats-visits");
    let line = |m: &str| rows.iter().find(|r| r[1] == m).unwrap().clone();
    // October: one household registered, none visited.
    assert_eq!(line("2026-10")[2..6], ["1", "1", "0", "0.0%"]);
    // November: two on the register, both visited.
    assert_eq!(line("2026-11")[2..6], ["2", "1", "2", "100.0%"]);
    // December: one moved out on the 1st; the other visited: 1 of 1, not 1 of 0 or of 2.
    let dec = line("2026-12");
    assert_eq!(dec[2..6], ["1", "0", "1", "100.0%"]);
    assert_eq!(dec[7..10], ["1", "1", "2"], "records, closed, tasks");
    assert_eq!(
        dec[10..14],
        ["1", "0", "1", "0"],
        "党群办, 小区办, 上门办, 未点单"
    );
    // The bar of December is the whole plot (100%), October's is empty (0%).
    let svg = &r.body[r.body.find("id=\"coverage-chart\"").unwrap()..];
    assert_eq!(
        svg.matches("class=\"bar\"").count(),
        3,
        "a bar a month, 0% included"
    );
    assert!(svg.contains("2026-12: 100.0%"));
    let handling = r.table("stats-handling");
    let dec = handling.iter().find(|r| r[1] == "2026-12").unwrap();
    // 已点单 1, 已评价 1; 1 closed, on time, rated 5.
    assert_eq!((dec[2].as_str(), dec[6].as_str()), ("1", "1"));
    assert_eq!(dec[8..], ["1", "0.3", "100.0%", "5.00"]);
    // The default: the last 6 months, ending this month.
    let r = b.get("/console/stats").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn the_console_without_data_shows_empty_ledgers_and_statistics() {
    let h = setup().await;
    let mut b = Browser::new(&h);
    b.login("u-g1").await;
    for path in ["/console/ledgers/records", "/console/ledgers/tasks"] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.contains("id=\"empty\""));
        let x = b.get(&format!("{path}?format=xlsx")).await;
        let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(x.bytes)).unwrap();
        let first = wb.sheet_names()[0].clone();
        assert_eq!(wb.worksheet_range(&first).unwrap().rows().count(), 1);
    }
    let r = b.get("/console/stats").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"stats-empty\""));
}
