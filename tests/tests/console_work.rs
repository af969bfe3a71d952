//! The station console closes the five orders (issue 11) against the real server binary:
//! its board counts what a synced phone counts, and a 派单, 督单, 问单 or escalation made in
//! the browser is an ordinary change that reaches the phone at its next sync, while an
//! action the fold refuses stores nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use xiuhua_core::hlc::civil_date;
use xiuhua_core::model::TaskAction;
use xiuhua_e2e::*;

const PW: &str = "station pass 2026";

/// A browser of the console: keeps its cookies, follows no redirect.
struct Browser {
    base: String,
    http: reqwest::blocking::Client,
    cookies: BTreeMap<String, String>,
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Page {
    status: u16,
    body: String,
    location: String,
}

impl Page {
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        self.body[at..].split('"').next().unwrap().to_string()
    }
    /// The number of a board column's count cell.
    fn count(&self, column: &str) -> usize {
        let at = self
            .body
            .find(&format!("id=\"count-{column}\""))
            .unwrap_or_else(|| panic!("column {column} on the board"));
        let rest = &self.body[at..];
        let n = rest.find("class=\"n\">").unwrap() + 10;
        rest[n..].split('<').next().unwrap().parse().unwrap()
    }
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            http: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn keep(&mut self, resp: reqwest::blocking::Response) -> Page {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            if let Some((k, val)) = pair.split_once('=') {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map_or(String::new(), |l| l.to_str().unwrap().to_string());
        Page {
            status,
            location,
            body: resp.text().unwrap(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&mut self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .unwrap();
        self.keep(resp)
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .unwrap();
        self.keep(resp)
    }

    fn login(base: &str, user: &str) -> Browser {
        let mut b = Browser::new(base);
        let form = b.get("/console/login");
        let csrf = form.csrf();
        let done = b.post(
            "/console/login",
            &[("csrf", &csrf), ("user", user), ("password", PW)],
        );
        assert_eq!(done.status, 303, "{user} logs in: {}", done.body);
        b
    }

    /// Posts one action form of a task page, with that page's CSRF token.
    fn act(&mut self, task: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(&format!("/console/tasks/{task}"));
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(&format!("/console/tasks/{task}"), &all)
    }
}

/// A `datetime-local` value in China time.
fn local_minute(ms: i64) -> String {
    let shifted = ms + 8 * 3_600_000;
    let days = u64::try_from(shifted.div_euclid(86_400_000)).unwrap();
    let (y, m, d) = civil_date(days);
    let mins = shifted.rem_euclid(86_400_000) / 60_000;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}", mins / 60, mins % 60)
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn the_board_counts_what_a_phone_counts_and_console_actions_reach_the_phone() {
    let server = Server::start_with(&[("XIUHUA_CONSOLE", "1")]);
    server.seed_directory();
    server.set_password("u-zhao", PW);
    server.set_password("u-chen", PW);
    let mut wang = server.enroll("u-wang");
    let s = &mut wang.store;
    let a = s
        .create_task(task("g1", None, "帮独居老人代缴水费"))
        .unwrap();
    let mut assigned = task("g1", None, "楼道灯不亮");
    assigned.assignee = Some("u-wang".into());
    let b = s.create_task(assigned.clone()).unwrap();
    s.task_action(&b, TaskAction::Accept).unwrap();
    assigned.title = "代办居住证".into();
    let c = s.create_task(assigned.clone()).unwrap();
    s.task_action(&c, TaskAction::Accept).unwrap();
    s.task_action(
        &c,
        TaskAction::Complete {
            result: "已办好".into(),
        },
    )
    .unwrap();
    assigned.title = "清理楼道杂物".into();
    assigned.deadline = Some(now_ms() + 1_500);
    let d = s.create_task(assigned).unwrap();
    std::thread::sleep(Duration::from_millis(2_000));
    wang.sync().unwrap();

    // The board, as a 社区工作者 of the community sees it, against the phone's own lists.
    let mut zhao = Browser::login(&server.url, "u-zhao");
    let board = zhao.get("/console/?grid=g1&col=overdue");
    assert_eq!(board.status, 200, "{}", board.body);
    let s = &wang.store;
    let phone = |status: &str| s.tasks("g1", None, Some(status), 1000).unwrap().len();
    assert_eq!(board.count("awaiting_assign"), phone("ordered"));
    assert_eq!(
        board.count("in_progress"),
        phone("assigned") + phone("in_progress")
    );
    assert_eq!(board.count("overdue"), s.overdue_tasks("g1").unwrap().len());
    assert_eq!(board.count("awaiting_rating"), phone("done"));
    assert_eq!(
        (
            board.count("awaiting_assign"),
            board.count("in_progress"),
            board.count("overdue"),
            board.count("awaiting_rating")
        ),
        (1, 2, 1, 1)
    );
    assert!(
        board.body.contains(&format!("data-task=\"{d}\"")),
        "the overdue task is listed"
    );

    // 派单, 督单 with a new deadline: each stored as a change of zhao's console device.
    let p = zhao.act(&a, &[("action", "assign"), ("assignee", "u-wang")]);
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location, format!("/console/tasks/{a}?done=assign"));
    let deadline = local_minute(now_ms() + 2 * 86_400_000);
    let p = zhao.act(
        &b,
        &[
            ("action", "supervise"),
            ("text", "请今天内处理"),
            ("deadline", &deadline),
        ],
    );
    assert_eq!(p.status, 303, "{}", p.body);
    // An action the fold refuses stores nothing: zhao is not the assignee of b.
    let before = server.grid_seq("g1");
    let p = zhao.act(&b, &[("action", "complete"), ("text", "代为办结")]);
    assert_eq!(p.status, 409, "{}", p.body);
    assert_eq!(
        server.grid_seq("g1"),
        before,
        "a refused action is not stored"
    );
    // A form value that is not a date: 400, nothing stored.
    let p = zhao.act(&b, &[("action", "change_deadline"), ("deadline", "明天")]);
    assert_eq!(p.status, 400, "{}", p.body);
    assert_eq!(server.grid_seq("g1"), before);
    // 问单 with send-back by the secretary reopens the done task.
    let mut chen = Browser::login(&server.url, "u-chen");
    let p = chen.act(
        &c,
        &[
            ("action", "inquire"),
            ("text", "居民反映没办好"),
            ("send_back", "on"),
        ],
    );
    assert_eq!(p.status, 303, "{}", p.body);
    // Escalation to a linked unit goes through the server's escalation check first.
    let p = zhao.act(
        &d,
        &[
            ("action", "escalate"),
            ("tier", "linked_unit"),
            ("unit", "物业"),
        ],
    );
    assert_eq!(p.status, 303, "{}", p.body);

    // The phone sees all of it after its next sync.
    let r = wang.sync().unwrap();
    assert!(r.pulled >= 4, "{r:?}");
    let s = &mut wang.store;
    let ta = s.task(&a).unwrap();
    assert_eq!(ta.view.status.as_str(), "assigned");
    assert_eq!(ta.view.assignee.as_deref(), Some("u-wang"));
    let tb = s.task(&b).unwrap();
    let last = &tb.view.events.last().unwrap().event;
    assert_eq!(
        (last.kind.as_str(), last.author.as_str()),
        ("supervise", "u-zhao")
    );
    assert_eq!(last.text, "请今天内处理");
    assert!(
        tb.view.deadline.unwrap() > now_ms() + 86_400_000,
        "the new deadline"
    );
    assert!(!tb.overdue);
    let tc = s.task(&c).unwrap();
    assert_eq!(tc.view.status.as_str(), "in_progress", "sent back");
    let td = s.task(&d).unwrap();
    assert_eq!(td.view.tier.as_str(), "linked_unit");
    assert_eq!(td.view.assignee.as_deref(), Some("物业"));

    // The console devices are ordinary devices of their users, listed for the admin.
    let devices = server.admin(&["devices"]);
    assert_eq!(devices.matches("站点控制台").count(), 2, "{devices}");

    // The task page shows the timeline with the console's events, and the outcome.
    let page = zhao.get(&format!("/console/tasks/{b}?done=supervise"));
    assert!(page.body.contains("请今天内处理"));
    assert!(page.body.contains("已记录：督单"), "{}", page.body);
    // A link cannot put its own words on the page.
    let page = zhao.get(&format!(
        "/console/tasks/{b}?done=%E5%81%87%E6%B6%88%E6%81%AF"
    ));
    assert!(!page.body.contains("假消息"));
}

#[test]
fn the_board_and_households_pages_refuse_what_is_not_the_users() {
    let server = Server::start_with(&[("XIUHUA_CONSOLE", "1")]);
    server.seed_directory();
    server.admin(&["user", "add", "u-far", "远方"]);
    server.admin(&["grant", "u-far", "--grid", "g3", "--role", "网格员"]);
    server.set_password("u-far", PW);
    let mut wang = server.enroll("u-wang");
    let h = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    let t = wang
        .store
        .create_task(task("g1", Some(&h), "代办"))
        .unwrap();
    wang.sync().unwrap();

    let mut far = Browser::login(&server.url, "u-far");
    for path in [
        format!("/console/tasks/{t}"),
        format!("/console/households/{h}"),
        "/console/?grid=g1".to_string(),
        "/console/tasks/no-such-task".to_string(),
    ] {
        let p = far.get(&path);
        assert_eq!(p.status, 404, "{path}");
    }
    // Its own board is empty, and a search finds nothing of g1.
    let p = far.get("/console/");
    assert_eq!(p.count("awaiting_assign"), 0);
    let p = far.get("/console/households?q=zhangsan");
    assert!(!p.body.contains(&h));
    // An action on another grid's task: the same 404, audited, nothing stored.
    let before = server.grid_seq("g1");
    let csrf = far.get("/console/").csrf();
    let p = far.post(
        &format!("/console/tasks/{t}"),
        &[("csrf", &csrf), ("action", "note"), ("text", "x")],
    );
    assert_eq!(p.status, 404);
    assert_eq!(server.grid_seq("g1"), before);
    // Bad board filters are a clear 400.
    for q in [
        "col=nope",
        "level=大办",
        "page=0",
        "from=2026-13-01",
        "sort=random",
    ] {
        assert_eq!(far.get(&format!("/console/?{q}")).status, 400, "{q}");
    }

    // A community worker finds the household by pinyin and sees its page, masked.
    server.set_password("u-zhao", PW);
    let mut zhao = Browser::login(&server.url, "u-zhao");
    let p = zhao.get("/console/households?q=zhangsan");
    assert!(
        p.body.contains(&format!("/console/households/{h}")),
        "{}",
        p.body
    );
    let p = zhao.get(&format!("/console/households/{h}"));
    assert_eq!(p.status, 200);
    assert!(p.body.contains("张三"));
    assert!(p.body.contains("id=\"history\""));
    assert!(
        p.body.contains("王伟"),
        "who registered it is in the history"
    );
    assert!(!p.body.contains("13800138000"), "phone numbers are masked");
}
