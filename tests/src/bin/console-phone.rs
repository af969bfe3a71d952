//! A phone for the console's browser tests (`scripts/console-tests.sh`): a real core store
//! syncing with the real server, driven from the command line, answering in JSON.
//!
//! - `console-phone seed DIR URL CODE`: enrolls with the code, makes a day's tasks on grid
//!   g1 (one awaiting 派单, two in progress of which one overdue, one done awaiting 评单)
//!   and a household (张三, 3号楼 1单元 502, phone 13800138000),
//!   syncs, and prints what the phone counts (`{"counts": {...}, "tasks": {...}}`).
//! - `console-phone sync DIR`: syncs the phone in DIR and prints every task of g1 with its
//!   state and last event.
//!
//! Exit 0 with JSON on standard output; 1 with the error on standard error.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use xiuhua_core::Store;
use xiuhua_core::model::{
    Actor, Address, Category, Gender, Level, NewHousehold, NewMember, NewTask, Relation, Role,
    TaskAction,
};
use xiuhua_core::sync::http::HttpTransport;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["seed", dir, url, code] => seed(Path::new(dir), url, code),
        ["sync", dir] => sync(Path::new(dir)),
        _ => Err("usage: console-phone seed DIR URL CODE | console-phone sync DIR".into()),
    };
    match r {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("console-phone: {e}");
            ExitCode::FAILURE
        }
    }
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn new_task(title: &str, assignee: Option<&str>, deadline: Option<i64>) -> NewTask {
    NewTask {
        grid: "g1".into(),
        level: Level::Doorstep,
        category: Category::Service,
        title: title.into(),
        description: String::new(),
        household: None,
        source_record: None,
        assignee: assignee.map(str::to_string),
        deadline,
    }
}

fn seed(dir: &Path, url: &str, code: &str) -> Result<Value, String> {
    std::fs::create_dir_all(dir).map_err(err("the phone's folder"))?;
    let mut t = HttpTransport::new(url).map_err(err("transport"))?;
    let resp =
        xiuhua_core::sync::enroll(&mut t, code, "browser test phone").map_err(err("enroll"))?;
    let role = resp
        .grants
        .first()
        .map_or(Ok(Role::GridMember), |g| Role::parse(&g.role))
        .map_err(err("role"))?;
    let actor =
        Actor::new(&resp.user, &resp.user_name, role, &resp.device).map_err(err("actor"))?;
    std::fs::write(
        dir.join("actor.json"),
        json!({"user": actor.user, "name": actor.name, "role": actor.role.as_str(), "device": actor.device}).to_string(),
    )
    .map_err(err("actor file"))?;
    let mut s = Store::open(dir.join("phone.db"), actor.clone()).map_err(err("store"))?;
    s.save_enrollment(url, &resp).map_err(err("enrollment"))?;
    let me = actor.user.as_str();
    let household = s
        .create_household(NewHousehold {
            address: Address::new("g1", "3号楼", "1单元", "502").map_err(err("address"))?,
            members: vec![NewMember {
                name: "张三".into(),
                gender: Gender::Male,
                birth_year: 1950,
                phone: Some("13800138000".into()),
                id_number: None,
                relation: Relation::Head,
                tags: vec![],
            }],
            tags: vec![],
            note: String::new(),
        })
        .map_err(err("household"))?;
    let waiting = s
        .create_task(new_task("帮独居老人代缴水费", None, None))
        .map_err(err("task"))?;
    let working = s
        .create_task(new_task("楼道灯不亮", Some(me), None))
        .map_err(err("task"))?;
    s.task_action(&working, TaskAction::Accept)
        .map_err(err("accept"))?;
    let done = s
        .create_task(new_task("代办居住证", Some(me), None))
        .map_err(err("task"))?;
    s.task_action(&done, TaskAction::Accept)
        .map_err(err("accept"))?;
    s.task_action(
        &done,
        TaskAction::Complete {
            result: "已办好".into(),
        },
    )
    .map_err(err("complete"))?;
    let late = s
        .create_task(new_task("清理楼道杂物", Some(me), Some(now_ms() + 1_500)))
        .map_err(err("task"))?;
    std::thread::sleep(Duration::from_millis(2_000));
    xiuhua_core::sync::sync(&mut s, &mut t, None).map_err(err("sync"))?;
    let n = |status: &str| s.tasks("g1", None, Some(status), 10_000).map(|v| v.len());
    Ok(json!({
        "counts": {
            "awaiting_assign": n("ordered").map_err(err("count"))?,
            "in_progress": n("assigned").map_err(err("count"))? + n("in_progress").map_err(err("count"))?,
            "overdue": s.overdue_tasks("g1").map_err(err("count"))?.len(),
            "awaiting_rating": n("done").map_err(err("count"))?,
        },
        "tasks": {"waiting": waiting, "working": working, "done": done, "late": late},
        "household": household,
    }))
}

fn sync(dir: &Path) -> Result<Value, String> {
    let a: Value =
        serde_json::from_slice(&std::fs::read(dir.join("actor.json")).map_err(err("actor file"))?)
            .map_err(err("actor file"))?;
    let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
    let role = Role::parse(&field("role")).map_err(err("role"))?;
    let actor =
        Actor::new(&field("user"), &field("name"), role, &field("device")).map_err(err("actor"))?;
    let mut s = Store::open(dir.join("phone.db"), actor).map_err(err("store"))?;
    let url = s
        .credentials()
        .map_err(err("credentials"))?
        .map(|c| c.server_url)
        .ok_or("the phone is not enrolled")?;
    let mut t = HttpTransport::new(&url).map_err(err("transport"))?;
    xiuhua_core::sync::sync(&mut s, &mut t, None).map_err(err("sync"))?;
    let mut tasks = serde_json::Map::new();
    for t in s.tasks("g1", None, None, 10_000).map_err(err("tasks"))? {
        let d = s.task(&t.id).map_err(err("task"))?;
        let last = d.view.events.last().map(|f| &f.event);
        tasks.insert(
            t.id.clone(),
            json!({
                "status": d.view.status.as_str(),
                "assignee": d.view.assignee,
                "deadline": d.view.deadline,
                "tier": d.view.tier.as_str(),
                "last_kind": last.map(|e| e.kind.clone()),
                "last_author": last.map(|e| e.author.clone()),
                "last_text": last.map(|e| e.text.clone()),
            }),
        );
    }
    Ok(json!({ "tasks": tasks }))
}
