//! Two devices work offline on the same grid, then exchange their changes: a household
//! edited on both, a 代办 task moved on both (one transition loses and is shown rejected).
//!
//! `cargo run --release -p xiuhua-core --example offline_merge`

use xiuhua_core::*;

fn main() -> Result<()> {
    let day = 1_764_000_000_000_i64; // 2025-11-24, a fixed day so the output is reproducible
    let mut a = Store::open_in_memory(Actor::new(
        "u-wang",
        "王伟",
        Role::GridMember,
        "phone-wang",
    )?)?;
    let mut b = Store::open_in_memory(Actor::new(
        "u-li",
        "李娜",
        Role::CommunityStaff,
        "phone-li",
    )?)?;
    a.set_time_source(move || day);
    b.set_time_source(move || day + 1_000);

    println!("== morning at the station: 王伟 registers a household and a task, 李娜 syncs");
    let hh = a.create_household(NewHousehold {
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
        note: "独居，耳背，上午在家".into(),
    })?;
    let task = a.create_task(NewTask {
        grid: "grid-007-03".into(),
        level: Level::Doorstep,
        category: Category::Service,
        title: "代办高龄补贴申请".into(),
        description: "老人行动不便，需上门收取材料".into(),
        household: Some(hh.clone()),
        source_record: None,
        assignee: Some("u-wang".into()),
        deadline: Some(day + 7 * 86_400_000),
    })?;
    b.apply_remote(&a.export_all()?)?;

    println!("== offline all day");
    let member = a.household(&hh)?.members[0].id.clone();
    a.set_member_phone(&hh, &member, Some("13912340000"))?;
    a.add_visit(
        &hh,
        NewVisit {
            purpose: "收取补贴材料".into(),
            note: "身份证复印件已收".into(),
            follow_up: None,
        },
    )?;
    a.task_action(&task, TaskAction::Accept)?;
    b.set_member_phone(&hh, &member, Some("15800001111"))?;
    b.task_action(
        &task,
        TaskAction::Cancel {
            reason: "家属已自行办理".into(),
        },
    )?;

    println!("== evening at the station: exchange");
    let from_a: Vec<RemoteChange> = a
        .outbox(1000)?
        .into_iter()
        .map(|e| RemoteChange {
            doc: e.doc,
            change: e.change,
        })
        .collect();
    let from_b: Vec<RemoteChange> = b
        .outbox(1000)?
        .into_iter()
        .map(|e| RemoteChange {
            doc: e.doc,
            change: e.change,
        })
        .collect();
    let ra = a.apply_remote(&from_b)?;
    let rb = b.apply_remote(&from_a)?;
    println!(
        "王伟's device: {} changes applied, {} conflicts, {} rejected",
        ra.applied,
        ra.new_conflicts.len(),
        ra.newly_rejected.len()
    );
    println!(
        "李娜's device: {} changes applied, {} conflicts, {} rejected",
        rb.applied,
        rb.new_conflicts.len(),
        rb.newly_rejected.len()
    );

    for (name, s) in [("王伟", &mut a), ("李娜", &mut b)] {
        let t = s.task(&task)?;
        println!(
            "-- {name} sees task {}: {} ({})",
            t.task.title,
            t.view.status.label(),
            t.view.status
        );
        for e in &t.view.events {
            println!(
                "   {:<16} by {:<4} {:?}",
                e.event.kind, e.event.author_name, e.outcome
            );
        }
        for c in s.conflicts(&hh)? {
            let values: Vec<String> = c
                .values
                .iter()
                .map(|v| format!("{} (from {})", v.value, v.device))
                .collect();
            println!("   conflict at {}: {}", c.path, values.join(" vs "));
        }
    }
    assert_eq!(
        a.projection_dump()?,
        b.projection_dump()?,
        "both devices converge"
    );
    println!("== both devices hold identical projections");
    Ok(())
}
