//! `xiuhua-server demo`: a field day on loopback, in one command.
//!
//! The server runs in this process on `127.0.0.1:0` with embedded SQLite in a temporary
//! data folder; the station's directory is seeded with the admin functions; four phones
//! enroll over HTTP with one-time codes and keep their own stores (temporary files). A grid
//! member (网格员 王伟) and a building leader (楼门长 李强, 3号楼) work offline all day,
//! one concurrent edit included, then sync at the station through the core client
//! (`xiuhua_core::sync::sync` over the reqwest transport, on a blocking thread). The
//! community worker and the secretary follow up in the evening. What each device saw before
//! and after, and the grid's ledger, are printed; the temporary folder is removed.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use xiuhua_core::model::*;
use xiuhua_core::sync::SyncReport;
use xiuhua_core::sync::http::HttpTransport;
use xiuhua_core::workflow::Outcome;
use xiuhua_core::{Store, sync};

use crate::admin::{self, GrantTarget};
use crate::auth::{self, Secret};
use crate::http::{AppState, Limits};
use crate::storage::sqlite::SqliteStorage;

const DISTRICT: &str = "rongdong";
const COMMUNITY: &str = "jinhu";
const GRID: &str = "jinhu-01";
const GRID2: &str = "jinhu-02";

/// The people of the day: (user id, name, role, buildings).
const PEOPLE: [(&str, &str, Role, &[&str]); 4] = [
    ("u-wangwei", "王伟", Role::GridMember, &[]),
    ("u-liqiang", "李强", Role::BuildingLeader, &["3号楼"]),
    ("u-zhaomin", "赵敏", Role::CommunityStaff, &[]),
    ("u-chenhong", "陈红", Role::Secretary, &[]),
];

/// Adds context to an error, as text.
trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).ctx("random bytes")?;
        let name = format!(
            "xiuhua-demo-{}-{}",
            std::process::id(),
            rnd.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let p = std::env::temp_dir().join(name);
        std::fs::create_dir_all(p.join("devices")).ctx("creating the temporary folder")?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the field day; prints as it goes.
pub async fn run() -> Result<String, String> {
    run_with(false).await
}

/// The secretary, whose console login `demo --serve` prints.
pub const CONSOLE_USER: &str = "u-chenhong";

/// The field day; with `serve`, the server (and its station console) keeps running
/// afterwards until SIGINT/SIGTERM, and the secretary's console login is printed as one line
/// `console: URL user=ID password=PASSWORD` (a fresh random password each run).
pub async fn run_with(serve: bool) -> Result<String, String> {
    let dir = TempDir::new()?;
    let data = dir.0.join("server");
    println!("绣花 Xiuhua · 一天的网格工作 A field day on loopback");
    println!("════════════════════════════════════════════════════════════════");
    println!("服务器数据 Server data (temporary): {}", data.display());

    let storage = SqliteStorage::open(&data).ctx("opening the database")?;
    let secret = Secret::load_or_create(&data).ctx("server secret")?;
    let codes = seed(&storage, &secret).await?;

    // The same server as `serve`: the edge limits of the default configuration.
    let mut cfg = crate::config::Config::default();
    cfg.console.enabled = serve;
    let state = AppState::new(
        Arc::new(storage.clone()),
        secret.clone(),
        Limits::from_config(&cfg),
    );
    let metrics = state.metrics.clone();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .ctx("binding 127.0.0.1:0")?;
    let addr = listener.local_addr().ctx("local address")?;
    let url = format!("http://{addr}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let edge = crate::server::EdgeLimits::from_config(&cfg);
    let server = tokio::spawn(async move {
        let app = crate::server::app_router(state, &cfg);
        crate::server::serve_connections(listener, app, &edge, metrics, async {
            let _ = stopped.await;
        })
        .await;
    });
    println!("服务器 Server: listening on {url} (embedded SQLite)\n");

    let devices = dir.0.join("devices");
    let day_url = url.clone();
    let day = tokio::task::spawn_blocking(move || field_day(&day_url, &codes, &devices))
        .await
        .ctx("the field day")?;
    if serve && day.is_ok() {
        let password = auth::new_enroll_code().ctx("a console password")?;
        admin::set_password(&storage, CONSOLE_USER, &password)
            .await
            .ctx("the secretary's console password")?;
        println!();
        println!("console: {url}/console/ user={CONSOLE_USER} password={password}");
        println!("(服务器继续运行，按 Ctrl-C 停止。 The server keeps running; Ctrl-C stops it.)");
        crate::server::shutdown_signal().await;
    }
    let _ = stop.send(());
    server.await.ctx("the server task")?;
    day?;
    println!("\n服务器已停止，临时数据已删除。 Server stopped; temporary data removed.");
    Ok(String::new())
}

/// The station's directory, with the admin functions the CLI uses; returns each person's
/// one-time enrollment code.
async fn seed(s: &SqliteStorage, secret: &Secret) -> Result<Vec<String>, String> {
    println!("\n【站点管理 Station administration】");
    let say = |r: Result<String, crate::error::StoreError>| -> Result<(), String> {
        let line = r.ctx("seeding the directory")?;
        println!("  · {line}");
        Ok(())
    };
    say(admin::add_district(s, DISTRICT, "容东片区").await)?;
    say(admin::add_community(s, COMMUNITY, "金湖社区", DISTRICT).await)?;
    say(admin::add_grid(s, GRID, "金湖社区第一网格", COMMUNITY).await)?;
    say(admin::add_grid(s, GRID2, "金湖社区第二网格", COMMUNITY).await)?;
    for b in ["1号楼", "2号楼", "3号楼"] {
        say(admin::add_building(s, GRID, b).await)?;
    }
    for (id, name, role, buildings) in PEOPLE {
        say(admin::add_user(s, id, name).await)?;
        let target = if matches!(role, Role::GridMember | Role::BuildingLeader) {
            GrantTarget::Grid(GRID.into())
        } else {
            GrantTarget::Community(COMMUNITY.into())
        };
        let b: Vec<String> = buildings.iter().map(|b| (*b).to_string()).collect();
        say(admin::grant(s, id, target, role.as_str(), &b).await)?;
    }
    let mut codes = Vec::new();
    for (id, name, _, _) in PEOPLE {
        let code = admin::enroll_code(s, secret, id)
            .await
            .ctx("enrollment code")?;
        println!("  · 登记码 enrollment code for {name} ({id}): {code}");
        codes.push(code);
    }
    Ok(codes)
}

/// One phone.
struct Phone {
    name: &'static str,
    role: Role,
    store: Store,
    url: String,
}

impl Phone {
    fn label(&self) -> String {
        format!("{} ({} {})", self.name, self.role, role_en(self.role))
    }

    fn sync(&mut self) -> Result<SyncReport, String> {
        let mut t = HttpTransport::new(&self.url).ctx("transport")?;
        let r = sync::sync(&mut self.store, &mut t, None)
            .map_err(|e| format!("{} could not sync: {e}", self.name))?;
        println!(
            "  ⇅ {} 同步 synced: 上传 pushed {} · 下载 pulled {} · 快照 bootstrapped {} · 重复 duplicates {} · 冲突 conflicts {} · 被拒 rejected {} · {} B ↑ {} B ↓ · {} ms",
            self.label(),
            r.pushed,
            r.pulled,
            r.bootstrapped_docs,
            r.duplicates,
            r.conflicts,
            r.rejected.len(),
            r.bytes_sent,
            r.bytes_received,
            r.duration_ms
        );
        for (doc, why) in &r.rejected {
            println!("      被拒 rejected {doc}: {why}");
        }
        Ok(r)
    }
}

fn role_en(r: Role) -> &'static str {
    match r {
        Role::GridMember => "grid member",
        Role::BuildingLeader => "building leader",
        Role::CommunityStaff => "community worker",
        Role::Secretary => "party secretary",
        Role::Admin => "admin",
    }
}

fn status_label(s: &str) -> String {
    match TaskStatus::parse(s) {
        Ok(st) => format!("{} {}", st.label(), s),
        Err(_) => s.to_string(),
    }
}

fn record_status_en(s: &str) -> &'static str {
    match RecordStatus::parse(s) {
        Ok(RecordStatus::Pending) => "pending",
        Ok(RecordStatus::InProgress) => "in progress",
        Ok(RecordStatus::Resolved) => "resolved",
        Ok(RecordStatus::FollowedUp) => "followed up",
        Err(_) => "?",
    }
}

fn tier_label(s: &str) -> &'static str {
    match Tier::parse(s) {
        Ok(Tier::Grid) => "网格 grid",
        Ok(Tier::Community) => "社区 community",
        Ok(Tier::LinkedUnit) => "联动单位 linked unit",
        Err(_) => "?",
    }
}

fn enroll(url: &str, code: &str, dir: &Path) -> Result<Phone, String> {
    let mut t = HttpTransport::new(url).ctx("transport")?;
    let resp = sync::enroll(&mut t, code, "演示手机 demo phone").ctx("enrollment")?;
    let (name, role) = PEOPLE
        .iter()
        .find(|p| p.0 == resp.user)
        .map(|p| (p.1, p.2))
        .ok_or_else(|| format!("enrolled as an unknown user {}", resp.user))?;
    let actor = Actor::new(&resp.user, &resp.user_name, role, &resp.device).ctx("actor")?;
    let mut store =
        Store::open(dir.join(format!("{}.db", resp.user)), actor).ctx("opening the store")?;
    store.save_enrollment(url, &resp).ctx("saving enrollment")?;
    let grants: Vec<String> = resp
        .grants
        .iter()
        .map(|g| {
            if g.buildings.is_empty() {
                format!("{} {}", g.grid, g.role)
            } else {
                format!("{} {} [{}]", g.grid, g.role, g.buildings.join(", "))
            }
        })
        .collect();
    println!(
        "  · {name} 登记设备 enrolled device {} · 授权 grants: {}",
        resp.device,
        grants.join("; ")
    );
    Ok(Phone {
        name,
        role,
        store,
        url: url.to_string(),
    })
}

fn act<T>(what: &str, r: xiuhua_core::Result<T>) -> Result<T, String> {
    match r {
        Ok(v) => {
            println!("    ✓ {what}");
            Ok(v)
        }
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn hh(
    building: &str,
    unit: &str,
    room: &str,
    members: Vec<NewMember>,
    tags: Vec<Tag>,
) -> Result<NewHousehold, String> {
    Ok(NewHousehold {
        address: Address::new(GRID, building, unit, room).ctx("address")?,
        members,
        tags,
        note: String::new(),
    })
}

fn member(
    name: &str,
    gender: Gender,
    year: i64,
    phone: &str,
    relation: Relation,
    tags: Vec<Tag>,
) -> NewMember {
    NewMember {
        name: name.into(),
        gender,
        birth_year: year,
        phone: Some(phone.into()),
        id_number: None,
        relation,
        tags,
    }
}

fn new_task(household: &str, category: Category, level: Level, title: &str) -> NewTask {
    NewTask {
        grid: GRID.into(),
        level,
        category,
        title: title.into(),
        description: String::new(),
        household: Some(household.into()),
        source_record: None,
        assignee: None,
        deadline: None,
    }
}

fn new_record(
    category: Category,
    text: &str,
    reporter: &str,
    household: Option<&str>,
    building: Option<&str>,
    place: &str,
) -> NewRecord {
    NewRecord {
        grid: GRID.into(),
        category,
        description: text.into(),
        reporter: reporter.into(),
        household: household.map(str::to_string),
        building: building.map(str::to_string),
        place: place.into(),
    }
}

fn field_day(url: &str, codes: &[String], dir: &Path) -> Result<(), String> {
    println!("【设备登记 Devices enroll over HTTP with their codes】");
    let mut phones = Vec::new();
    for code in codes {
        phones.push(enroll(url, code, dir)?);
    }
    let [mut wang, mut li, mut zhao, mut chen]: [Phone; 4] = phones
        .try_into()
        .map_err(|_| "four phones expected".to_string())?;

    // ----- morning -----
    println!("\n【清晨 · 服务站 Morning at the service station】");
    println!("  王伟 registers 3号楼 and 2号楼 households; 李强 orders a task for 102 (点单)");
    let h101 = act(
        "王伟 登记住户 household 3号楼 1单元 101 张秀英 (独居老人 living alone)",
        wang.store.create_household(hh(
            "3号楼",
            "1单元",
            "101",
            vec![member(
                "张秀英",
                Gender::Female,
                1944,
                "13800138000",
                Relation::Head,
                vec![Tag::LivingAlone],
            )],
            vec![],
        )?),
    )?;
    let h102 = act(
        "王伟 登记住户 household 3号楼 1单元 102 刘建国 + 王淑芬",
        wang.store.create_household(hh(
            "3号楼",
            "1单元",
            "102",
            vec![
                member(
                    "刘建国",
                    Gender::Male,
                    1950,
                    "13612345678",
                    Relation::Head,
                    vec![Tag::Disabled, Tag::PartyMember],
                ),
                member(
                    "王淑芬",
                    Gender::Female,
                    1953,
                    "13612345679",
                    Relation::Spouse,
                    vec![],
                ),
            ],
            vec![Tag::PartyHub],
        )?),
    )?;
    let h201 = act(
        "王伟 登记住户 household 2号楼 2单元 201 孙丽 (低保 dibao)",
        wang.store.create_household(hh(
            "2号楼",
            "2单元",
            "201",
            vec![member(
                "孙丽",
                Gender::Female,
                1978,
                "15011112222",
                Relation::Head,
                vec![Tag::Dibao],
            )],
            vec![],
        )?),
    )?;
    wang.sync()?;
    li.sync()?;
    let t_card = act(
        "李强 点单 order: 代办残疾证年审 for 102 (上门办 doorstep)",
        li.store.create_task(new_task(
            &h102,
            Category::Service,
            Level::Doorstep,
            "代办残疾证年审",
        )),
    )?;
    li.sync()?;
    wang.sync()?;
    zhao.sync()?;
    chen.sync()?;

    // ----- the day, offline -----
    println!("\n【白天 · 离线 Daytime, offline: no network, every action stays on the phone】");
    println!("  王伟 (网格员):");
    let h202 = act(
        "登记新住户 new household 2号楼 2单元 202 周强",
        wang.store.create_household(hh(
            "2号楼",
            "2单元",
            "202",
            vec![member(
                "周强",
                Gender::Male,
                1985,
                "18612340000",
                Relation::Head,
                vec![Tag::Floating],
            )],
            vec![],
        )?),
    )?;
    act(
        "走访 visit 101 张秀英",
        wang.store.add_visit(
            &h101,
            NewVisit {
                purpose: "走访独居老人".into(),
                note: "血压偏高，已提醒按时服药".into(),
                follow_up: Some("一周后回访".into()),
            },
        ),
    )?;
    act(
        "走访 visit 201 孙丽",
        wang.store.add_visit(
            &h201,
            NewVisit {
                purpose: "低保复核入户".into(),
                note: "家庭情况无变化".into(),
                follow_up: None,
            },
        ),
    )?;
    let zhang = wang
        .store
        .household(&h101)
        .ctx("household 101")?
        .members
        .first()
        .map(|m| m.id.clone())
        .ok_or("101 has no member")?;
    act(
        "改电话 set 张秀英's phone → 13911112222 (her son's number)",
        wang.store
            .set_member_phone(&h101, &zhang, Some("13911112222")),
    )?;
    let rec_lift = act(
        "记民情 record [设施报修] 2号楼电梯异响",
        wang.store.create_record(new_record(
            Category::Repair,
            "2号楼电梯运行时异响，居民担心安全",
            "孙丽",
            Some(&h201),
            None,
            "2号楼电梯",
        )),
    )?;
    let t_subsidy = act(
        "点单 order: 代办高龄补贴申请 for 101 (上门办 doorstep)",
        wang.store.create_task(new_task(
            &h101,
            Category::Service,
            Level::Doorstep,
            "代办高龄补贴申请",
        )),
    )?;
    act(
        "派单 assign it to 王伟",
        wang.store.task_action(
            &t_subsidy,
            TaskAction::Assign {
                assignee: "u-wangwei".into(),
            },
        ),
    )?;
    act(
        "接单 accept",
        wang.store.task_action(&t_subsidy, TaskAction::Accept),
    )?;
    act(
        "改级 change level 上门办 → 党群办 (materials must be stamped at the center)",
        wang.store.task_action(
            &t_subsidy,
            TaskAction::ChangeLevel {
                level: Level::PartyMass,
            },
        ),
    )?;
    act(
        "办结 complete: 材料已递交党群服务中心",
        wang.store.task_action(
            &t_subsidy,
            TaskAction::Complete {
                result: "材料已递交党群服务中心".into(),
            },
        ),
    )?;
    let t_leak = act(
        "点单 order: 协调楼上漏水纠纷 for 201 (小区办 compound)",
        wang.store.create_task(new_task(
            &h201,
            Category::Dispute,
            Level::Compound,
            "协调楼上漏水纠纷",
        )),
    )?;
    act(
        "上报 escalate to 社区 community (大事不出社区)",
        wang.store.escalate_task(&t_leak, Tier::Community, None),
    )?;
    act(
        "接单 accept 李强's 代办残疾证年审 (unassigned: anyone in the grid)",
        wang.store.task_action(&t_card, TaskAction::Accept),
    )?;

    println!("  李强 (楼门长 3号楼):");
    act(
        "记民情 record [环境卫生] 3号楼楼道堆放杂物",
        li.store.create_record(new_record(
            Category::Environment,
            "3号楼1单元楼道堆放纸箱杂物，影响通行",
            "刘建国",
            None,
            Some("3号楼"),
            "3号楼1单元楼道",
        )),
    )?;
    act(
        "记民情 record [安全隐患] 3号楼电动车楼道充电",
        li.store.create_record(new_record(
            Category::Safety,
            "有住户在楼道给电动车充电",
            "王淑芬",
            None,
            Some("3号楼"),
            "3号楼2单元",
        )),
    )?;
    act(
        "记民情 record [民生诉求] 101 张秀英 asks for meal delivery",
        li.store.create_record(new_record(
            Category::Livelihood,
            "张秀英希望社区提供助餐送餐服务",
            "张秀英",
            Some(&h101),
            None,
            "3号楼1单元101",
        )),
    )?;
    act(
        "改电话 set 张秀英's phone → 13700001111 (her daughter's number)  ⟵ same field as 王伟",
        li.store
            .set_member_phone(&h101, &zhang, Some("13700001111")),
    )?;
    act(
        "撤单 cancel his 代办残疾证年审: 居民已自行办理  ⟵ while 王伟 accepted it",
        li.store.task_action(
            &t_card,
            TaskAction::Cancel {
                reason: "居民已自行办理".into(),
            },
        ),
    )?;

    println!("\n【同步前 Before sync: what each phone sees】");
    show(&mut wang)?;
    show(&mut li)?;

    // ----- the station -----
    println!("\n【傍晚 · 服务站同步 Evening: both sync at the station (Wi-Fi)】");
    wang.sync()?;
    li.sync()?;
    wang.sync()?;

    println!("\n【同步后 After sync】");
    show(&mut wang)?;
    show(&mut li)?;

    // ----- follow-up -----
    println!("\n【跟进 Follow-up: 社区工作者 and 书记 at the center】");
    zhao.sync()?;
    let leak = zhao.store.task(&t_leak).ctx("the escalated task")?;
    println!(
        "  赵敏 sees the escalated task 协调楼上漏水纠纷 at tier {} (状态 state {})",
        tier_label(leak.view.tier.as_str()),
        status_label(leak.view.status.as_str())
    );
    act(
        "赵敏 派单 assign 协调楼上漏水纠纷 to herself",
        zhao.store.task_action(
            &t_leak,
            TaskAction::Assign {
                assignee: "u-zhaomin".into(),
            },
        ),
    )?;
    zhao.sync()?;
    chen.sync()?;
    act(
        "陈红 书记问单 inquire 代办高龄补贴申请: 材料是否齐全？(no send-back)",
        chen.store.task_action(
            &t_subsidy,
            TaskAction::Inquire {
                text: "材料是否齐全？已电话核实".into(),
                send_back: false,
            },
        ),
    )?;
    chen.sync()?;
    wang.sync()?;
    act(
        "王伟 群众评单 records 张秀英's rating: 5 满意",
        wang.store.task_action(
            &t_subsidy,
            TaskAction::Rate {
                score: 5,
                comment: "办事快，很满意".into(),
            },
        ),
    )?;
    act(
        "王伟 moves 2号楼电梯 record to 处理中 (物业已报修)",
        wang.store
            .set_record_status(&rec_lift, RecordStatus::InProgress),
    )?;
    wang.sync()?;
    chen.sync()?;
    li.sync()?;

    let _ = h202;
    println!(
        "\n【台账 The grid's ledger (民情台账 / 政务台账), {GRID}, as 书记 陈红's phone has it】"
    );
    ledger(&chen.store)?;
    let a = wang.store.ledger(GRID).ctx("ledger")?;
    let b = chen.store.ledger(GRID).ctx("ledger")?;
    if a != b {
        return Err("the grid member's and the secretary's ledgers differ after sync".into());
    }
    println!("  (王伟's phone shows the same ledger ✓)");
    Ok(())
}

fn show(p: &mut Phone) -> Result<(), String> {
    let s = &mut p.store;
    println!("  ── {} ({} {}) ──", p.name, p.role, role_en(p.role));
    let mut n = 0;
    let mut lines = Vec::new();
    for (b, _) in s.buildings(GRID).ctx("buildings")? {
        for h in s.households_in(GRID, &b, None).ctx("households")? {
            n += 1;
            let mut line = format!(
                "      {} {} {}  户主 head {} · {}人 members · 走访 visits {}",
                h.building, h.unit, h.room, h.head_name, h.member_count, h.visit_count
            );
            if h.conflicts > 0 {
                line.push_str(&format!(" · ⚠ 冲突 conflicts {}", h.conflicts));
            }
            lines.push(line);
        }
    }
    println!("    住户 Households ({n}):");
    for l in lines {
        println!("{l}");
    }
    let recs = s.records(GRID, None, None, 100).ctx("records")?;
    println!("    民情 Records ({}):", recs.len());
    for r in &recs {
        println!(
            "      [{}] {} {} — {} (报告人 reporter {})",
            r.category,
            r.status,
            record_status_en(&r.status),
            r.summary,
            r.reporter
        );
    }
    let tasks = s.tasks(GRID, None, None, 100).ctx("tasks")?;
    println!("    代办 Tasks ({}):", tasks.len());
    for t in &tasks {
        let mut line = format!(
            "      {} — {} · {} · {}",
            t.title,
            status_label(&t.status),
            t.level.as_deref().unwrap_or("-"),
            tier_label(&t.tier)
        );
        if let Some(a) = &t.assignee {
            line.push_str(&format!(" · 承办 assignee {a}"));
        }
        if let Some(r) = t.rating {
            line.push_str(&format!(" · 评分 rating {r}"));
        }
        println!("{line}");
    }
    let conflicted = s.households_with_conflicts(GRID).ctx("conflicts")?;
    let rejected_tasks = s.tasks_with_conflicts(GRID).ctx("task conflicts")?;
    if conflicted.is_empty() && rejected_tasks.is_empty() {
        println!("    冲突 Conflicts: 无 none");
    }
    for h in conflicted {
        for c in s.conflicts(&h.id).ctx("conflicts")? {
            let vals: Vec<String> = c
                .values
                .iter()
                .map(|v| format!("{} (by device {})", v.value, v.device))
                .collect();
            println!(
                "    冲突 Conflict {} {} {} · {}: {}  (shown first wins until someone resolves it)",
                h.building,
                h.room,
                h.head_name,
                c.path,
                vals.join(" vs ")
            );
        }
    }
    for t in rejected_tasks {
        let d = s.task(&t.id).ctx("task")?;
        for e in d.view.events {
            if let Outcome::Rejected { reason } = e.outcome {
                println!(
                    "    被拒事件 Rejected event on {}: {} by {} — {}",
                    t.title, e.event.kind, e.event.author_name, reason
                );
            }
        }
    }
    let st = s.sync_status().ctx("status")?;
    println!("    待上传 Outbox: {} changes", st.pending_outbox);
    Ok(())
}

fn ledger(s: &Store) -> Result<(), String> {
    let l = s.ledger(GRID).ctx("ledger")?;
    println!(
        "  住户 Households {} · 居民 Residents {}",
        l.households, l.residents
    );
    println!("  民情 Records by category × status:");
    let records: Vec<(String, String, i64)> = l
        .records
        .iter()
        .map(|(c, st, n)| (c.clone(), format!("{st} {}", record_status_en(st)), *n))
        .collect();
    print_matrix(&records);
    println!("  代办 Tasks by level × status:");
    let tasks: Vec<(String, String, i64)> = l
        .tasks
        .iter()
        .map(|(lv, st, n)| (lv.clone(), status_label(st), *n))
        .collect();
    print_matrix(&tasks);
    match l.average_satisfaction {
        Some(a) => println!(
            "  平均满意度 Average satisfaction: {a:.1} / 5 ({} rated)",
            l.rated_tasks
        ),
        None => println!("  平均满意度 Average satisfaction: — (no rated task)"),
    }
    println!("  逾期 Overdue tasks: {}", l.overdue_tasks);
    Ok(())
}

fn print_matrix(cells: &[(String, String, i64)]) {
    let mut rows: Vec<&str> = Vec::new();
    let mut cols: Vec<&str> = Vec::new();
    for (r, c, _) in cells {
        if !rows.contains(&r.as_str()) {
            rows.push(r);
        }
        if !cols.contains(&c.as_str()) {
            cols.push(c);
        }
    }
    if rows.is_empty() {
        println!("      (none)");
        return;
    }
    // CJK characters take two columns in a terminal.
    let width = |s: &str| -> usize {
        s.chars()
            .map(|c| {
                let wide = matches!(c, '\u{1100}'..='\u{115F}' | '\u{2E80}'..='\u{A4CF}' | '\u{AC00}'..='\u{D7A3}' | '\u{F900}'..='\u{FAFF}' | '\u{FE30}'..='\u{FE4F}' | '\u{FF00}'..='\u{FF60}' | '\u{FFE0}'..='\u{FFE6}');
                if wide { 2 } else { 1 }
            })
            .sum()
    };
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(width(s))));
    let w0 = rows.iter().map(|r| width(r)).max().unwrap_or(0).max(4);
    let ws: Vec<usize> = cols.iter().map(|c| width(c).max(3)).collect();
    let mut head = format!("      {}", pad("", w0));
    for (c, w) in cols.iter().zip(&ws) {
        head.push_str(&format!(" │ {}", pad(c, *w)));
    }
    println!("{head}");
    for r in &rows {
        let mut line = format!("      {}", pad(r, w0));
        for (c, w) in cols.iter().zip(&ws) {
            let n = cells
                .iter()
                .find(|(rr, cc, _)| rr == r && cc == c)
                .map_or(0, |x| x.2);
            let v = if n == 0 {
                "·".to_string()
            } else {
                n.to_string()
            };
            line.push_str(&format!(" │ {}", pad(&v, *w)));
        }
        println!("{line}");
    }
}
