//! The README's Rust example, compiled and run so that it stays true.
//! `cargo run -p xiuhua-core --example readme`

use xiuhua_core::*;

fn main() -> Result<()> {
    let me = Actor::new("u-wang", "王伟", Role::GridMember, "phone-7f3a")?;
    let mut store = Store::open_encrypted(
        std::env::temp_dir().join(format!("xiuhua-readme-{}.db", std::process::id())),
        "key-from-the-keystore",
        me,
    )?;
    let hh = store.create_household(NewHousehold {
        address: Address::new("grid-007-03", "3号楼", "2单元", "502")?,
        members: vec![NewMember {
            name: "曾秀英".into(),
            gender: Gender::Female,
            birth_year: 1942,
            phone: Some("13912345678".into()),
            id_number: Some("11010519491231002X".into()),
            relation: Relation::Head,
            tags: vec![Tag::LivingAlone],
        }],
        tags: vec![Tag::Relocated],
        note: "独居，上午在家".into(),
    })?;
    store.add_visit(
        &hh,
        NewVisit {
            purpose: "走访".into(),
            note: "身体尚好".into(),
            follow_up: None,
        },
    )?;
    // 曾 is found under both readings; ID numbers are masked in lists.
    assert_eq!(
        store.search_residents("cxy", 10)?[0].id_masked.as_deref(),
        Some("110***********002X")
    );
    let task = store.create_task(NewTask {
        grid: "grid-007-03".into(),
        level: Level::Doorstep,
        category: Category::Service,
        title: "代办高龄补贴".into(),
        description: String::new(),
        household: Some(hh),
        source_record: None,
        assignee: Some("u-wang".into()),
        deadline: None,
    })?;
    store.task_action(&task, TaskAction::Accept)?;
    let t = store.task_action(
        &task,
        TaskAction::Complete {
            result: "材料已交".into(),
        },
    )?;
    assert_eq!(t.view.status, TaskStatus::Done);
    Ok(())
}
