//! Byte fixtures of every message of the sync protocol (`xiuhua_core::sync::proto`), so that a
//! change of the wire format is seen even when both sides change together (a field renamed,
//! retyped or reordered in the struct, an enum variant renamed, a default dropped).
//!
//! Each fixture is a body exactly as it travels (`proto::encode`: named-field MessagePack in
//! one zstd frame), built from a fixed value below and kept in
//! `tests/fixtures/wire/v{PROTOCOL_VERSION}/{Type}.{case}.msgpack.zst`. The test
//! 1. decodes each fixture with `proto::decode` and compares it with the value;
//! 2. re-encodes the value and compares the MessagePack byte for byte with the fixture's
//!    (decompressed) MessagePack. The compressed bytes are compared too, but only reported:
//!    zstd is deterministic for one library version and level (checked here: two encodings
//!    of one value are identical), yet a zstd upgrade may compress the same bytes differently
//!    without any change of the protocol;
//! 3. checks that every serializable type of `proto.rs` has a fixture (or is listed in
//!    [`NESTED`]) and that no fixture file is left without a value.
//!
//! New message: add a value in [`all_cases`], then `XIUHUA_BLESS=1 cargo test -p xiuhua-core
//! --test wire_fixtures` writes its file (and rewrites the files of changed messages: bless
//! only a change of the protocol you mean, and bump `PROTOCOL_VERSION` unless it is a
//! compatible addition).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;
use xiuhua_core::numbers::{NumberBlock, NumberHeld};
use xiuhua_core::store::{HouseholdRow, RecordRow, ResidentRow, Rows, TaskRow};
use xiuhua_core::sync::proto::{self, *};

/// Serializable types of `proto.rs` that only travel inside another message's fixture.
const NESTED: &[(&str, &str)] = &[
    ("Grant", "EnrollResponse"),
    ("GridPerson", "SessionResponse"),
    ("DocChanges", "PushRequest"),
    ("GridSeq", "PushResponse"),
    ("PulledChange", "PullResponse"),
    ("BundleDoc", "Bundle"),
    ("GridEstimate", "EstimateResponse"),
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wire")
        .join(format!("v{}", proto::PROTOCOL_VERSION))
}

fn blessing() -> bool {
    std::env::var("XIUHUA_BLESS").is_ok_and(|v| v == "1")
}

fn unzstd(b: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(b).expect("a zstd frame")
}

/// Where the first difference of two byte strings is, for messages.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let show = |s: &[u8]| {
        let end = (at + 24).min(s.len());
        let start = at.saturating_sub(8);
        format!(
            "{:02x?} (as text {:?})",
            &s[start..end],
            String::from_utf8_lossy(&s[start..end])
        )
    };
    format!(
        "lengths {} vs {}; first difference at byte {at}: fixture {} / now {}",
        a.len(),
        b.len(),
        show(a),
        show(b)
    )
}

#[derive(Default)]
struct Checker {
    /// `Type.case` of every value checked.
    cases: BTreeSet<String>,
    /// Every type with at least one fixture.
    types: BTreeSet<String>,
    problems: Vec<String>,
    notes: Vec<String>,
    blessed: Vec<String>,
}

impl Checker {
    fn check<T>(&mut self, case: &str, value: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let ty = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("?");
        let name = format!("{ty}.{case}");
        assert!(self.cases.insert(name.clone()), "case {name} twice");
        self.types.insert(ty.to_string());
        let path = dir().join(format!("{name}.msgpack.zst"));

        let encoded = proto::encode(&value);
        if proto::encode(&value) != encoded {
            self.problems.push(format!(
                "{name}: two encodings of one value differ (zstd not deterministic?)"
            ));
        }
        let raw = rmp_serde::to_vec_named(&value).expect("serializes");
        assert_eq!(
            unzstd(&encoded),
            raw,
            "{name}: encode is MessagePack in one zstd frame"
        );

        let existing = std::fs::read(&path).ok();
        if blessing() && existing.as_deref().map(unzstd) != Some(raw.clone()) {
            std::fs::create_dir_all(dir()).expect("fixture folder");
            std::fs::write(&path, &encoded).expect("write fixture");
            self.blessed.push(name);
            return;
        }
        let Some(fixture) = existing else {
            self.problems.push(format!(
                "{name}: no fixture at {}; XIUHUA_BLESS=1 writes it",
                path.display()
            ));
            return;
        };
        match proto::decode::<T>(&fixture) {
            Ok(decoded) if decoded == value => {}
            Ok(decoded) => self.problems.push(format!(
                "{name}: the fixture decodes to\n  {decoded:?}\nnot the value\n  {value:?}"
            )),
            Err(e) => self
                .problems
                .push(format!("{name}: the fixture no longer decodes: {e}")),
        }
        let fixture_raw = unzstd(&fixture);
        if fixture_raw != raw {
            self.problems.push(format!(
                "{name}: the value now encodes to other MessagePack than the fixture (a field \
                 renamed, retyped or moved?): {}",
                first_difference(&fixture_raw, &raw)
            ));
        } else if fixture != encoded {
            self.notes.push(format!(
                "{name}: same MessagePack, other zstd bytes than the fixture (zstd upgraded?)"
            ));
        }
    }
}

const NOW: i64 = 1_772_323_200_000;

fn bytes(b: &[u8]) -> ByteBuf {
    ByteBuf::from(b.to_vec())
}

fn tokens() -> TokenResponse {
    TokenResponse {
        access_token: "dev-7f3a.u-wang.1772324100000.5d41402abc4b2a76b9719d911017c592".into(),
        access_expires_ms: NOW + 900_000,
        refresh_token: "r-2c26b46b68ffc68ff99b453c1d304134".into(),
    }
}

fn household_rows() -> Rows {
    Rows::Household {
        household: HouseholdRow {
            id: "hh-01".into(),
            grid: "东城-01".into(),
            building: "3号楼".into(),
            unit: "2单元".into(),
            room: "502".into(),
            head_name: "曾秀英".into(),
            member_count: 2,
            tags: "独居老人".into(),
            visit_count: 3,
            last_visit_at: Some(NOW - 86_400_000),
            conflicts: 1,
            moved_out_at: None,
        },
        residents: vec![ResidentRow {
            household: "hh-01".into(),
            member: "m-01".into(),
            grid: "东城-01".into(),
            building: "3号楼".into(),
            name: "曾秀英".into(),
            pinyin: "zengxiuying cengxiuying".into(),
            initials: "zxy cxy".into(),
            phone: Some("13800000000".into()),
            id_masked: Some("110***********002X".into()),
            gender: "女".into(),
            birth_year: 1942,
            relation: "户主".into(),
            tags: "独居老人".into(),
            status: Some("迁出".into()),
        }],
    }
}

fn record_rows() -> Rows {
    Rows::Record(RecordRow {
        id: "rec-01".into(),
        grid: "东城-01".into(),
        category: "环境卫生".into(),
        status: "open".into(),
        reporter: "u-li".into(),
        household: Some("hh-01".into()),
        building: Some("3号楼".into()),
        place: "3号楼楼道".into(),
        reported_at: NOW - 3_600_000,
        summary: "楼道堆物".into(),
        text: String::new(),
        conflicts: 0,
        number: None,
        provisional_number: None,
    })
}

fn task_rows() -> Rows {
    Rows::Task(TaskRow {
        id: "task-01".into(),
        grid: "东城-01".into(),
        title: "代办高龄补贴".into(),
        category: "service".into(),
        level: Some("上门办".into()),
        status: "in_progress".into(),
        tier: "grid".into(),
        assignee: Some("u-wang".into()),
        deadline: Some(NOW + 7 * 86_400_000),
        created_at: NOW - 7_200_000,
        household: Some("hh-01".into()),
        source_record: Some("rec-01".into()),
        rating: Some(9),
        rejected: 1,
        reminded_at: None,
        reopened_at: None,
        text: String::new(),
        number: None,
        provisional_number: None,
    })
}

/// Every message, each with every field set (and the optional ones both ways where it
/// matters).
fn all_cases(c: &mut Checker) {
    c.check(
        "full",
        EnrollRequest {
            code: "7K3M-Q9XD-2HPA".into(),
            device_name: "王伟的手机".into(),
            previous_device: Some("d-4f1c2b7a".into()),
        },
    );
    c.check(
        "full",
        EnrollResponse {
            device: "dev-7f3a".into(),
            user: "u-wang".into(),
            user_name: "王伟".into(),
            grants: vec![
                Grant {
                    grid: "东城-01".into(),
                    role: "网格员".into(),
                    buildings: vec![],
                    ..Default::default()
                },
                Grant {
                    grid: "东城-02".into(),
                    role: "楼门长".into(),
                    buildings: vec!["3号楼".into(), "5号楼".into()],
                    ..Default::default()
                },
            ],
            tokens: tokens(),
            server_time_ms: NOW,
            number_blocks: vec![],
        },
    );
    c.check("empty", SessionRequest::default());
    c.check(
        "with_numbers",
        SessionRequest {
            numbers: vec![NumberHeld {
                community: "c-jinhu".into(),
                year: 2026,
                left: 12,
                last_start: 301,
            }],
        },
    );
    c.check(
        "with_numbers",
        SessionResponse {
            server_time_ms: NOW,
            device: "dev-7f3a".into(),
            user: "u-wang".into(),
            user_name: "王伟".into(),
            grants: vec![Grant {
                grid: "东城-01".into(),
                role: "网格员".into(),
                buildings: vec![],
                community: "c-jinhu".into(),
                number_prefix: "金湖".into(),
            }],
            people: None,
            number_blocks: vec![NumberBlock {
                community: "c-jinhu".into(),
                prefix: "金湖".into(),
                year: 2026,
                start: 401,
                end: 501,
            }],
        },
    );
    c.check(
        "full",
        SessionResponse {
            server_time_ms: NOW,
            device: "dev-7f3a".into(),
            user: "u-wang".into(),
            user_name: "王伟".into(),
            grants: vec![Grant {
                grid: "东城-02".into(),
                role: "楼门长".into(),
                buildings: vec!["3号楼".into()],
                ..Default::default()
            }],
            people: None,
            number_blocks: vec![],
        },
    );
    c.check(
        "with_people",
        SessionResponse {
            server_time_ms: NOW,
            device: "dev-7f3a".into(),
            user: "u-wang".into(),
            user_name: "王伟".into(),
            grants: vec![Grant {
                grid: "东城-02".into(),
                role: "网格员".into(),
                buildings: vec![],
                ..Default::default()
            }],
            people: Some(vec![
                GridPerson {
                    grid: "东城-02".into(),
                    user: "u-wang".into(),
                    name: "王伟".into(),
                    role: "网格员".into(),
                },
                GridPerson {
                    grid: "东城-02".into(),
                    user: "u-li".into(),
                    name: "李强".into(),
                    role: "楼门长".into(),
                },
            ]),
            number_blocks: vec![],
        },
    );
    c.check(
        "full",
        RefreshRequest {
            refresh_token: "r-2c26b46b68ffc68ff99b453c1d304134".into(),
        },
    );
    c.check("full", tokens());
    c.check(
        "full",
        PushRequest {
            docs: vec![
                DocChanges {
                    doc: "hh-01".into(),
                    changes: vec![
                        bytes(b"\x85\x6f\x4a\x83change-1"),
                        bytes(b"\x85\x6f\x4a\x83change-2"),
                    ],
                },
                DocChanges {
                    doc: "task-01".into(),
                    changes: vec![bytes(&[0x85, 0x6f, 0x4a, 0x83, 0, 1, 2, 255])],
                },
            ],
        },
    );
    c.check(
        "full",
        PushResponse {
            server_time_ms: NOW,
            stored: 3,
            duplicates: 1,
            grid_seqs: vec![GridSeq {
                grid: "东城-01".into(),
                seq: 4_242,
            }],
        },
    );
    c.check(
        "long_poll",
        PullRequest {
            grid: "东城-01".into(),
            since: 4_200,
            limit: 2_000,
            wait_ms: 25_000,
        },
    );
    c.check(
        "full",
        PullResponse {
            server_time_ms: NOW,
            grid: "东城-01".into(),
            changes: vec![
                PulledChange {
                    seq: 4_201,
                    doc: "hh-01".into(),
                    change: bytes(b"\x85\x6f\x4a\x83pulled-1"),
                },
                PulledChange {
                    seq: 4_202,
                    doc: "rec-01".into(),
                    change: bytes(b"\x85\x6f\x4a\x83pulled-2"),
                },
            ],
            next: 4_202,
            more: true,
            moved_out: vec![],
            moved_in: vec![],
        },
    );
    c.check(
        "moved",
        PullResponse {
            server_time_ms: NOW,
            grid: "东城-01".into(),
            changes: vec![PulledChange {
                seq: 4_301,
                doc: "hh-02".into(),
                change: bytes(b"\x85\x6f\x4a\x83pulled-3"),
            }],
            next: 4_310,
            more: false,
            moved_out: vec!["hh-01".into(), "task-01".into()],
            moved_in: vec!["hh-02".into()],
        },
    );
    c.check(
        "first_page",
        BootstrapRequest {
            grid: "东城-01".into(),
            after: None,
            limit: 0,
            buildings: vec![],
        },
    );
    c.check(
        "next_page",
        BootstrapRequest {
            grid: "东城-01".into(),
            after: Some("hh-01".into()),
            limit: 500,
            buildings: vec![],
        },
    );
    c.check(
        "scoped",
        BootstrapRequest {
            grid: "东城-01".into(),
            after: None,
            limit: 0,
            buildings: vec!["5号楼".into()],
        },
    );
    c.check(
        "every_kind",
        Bundle {
            server_time_ms: NOW,
            grid: "东城-01".into(),
            cursor: 4_242,
            projection_version: 1,
            docs: vec![
                BundleDoc {
                    id: "hh-01".into(),
                    kind: "household".into(),
                    heads: vec![bytes(&[0xab; 32])],
                    bytes: bytes(b"\x85\x6f\x4a\x83document-hh-01"),
                    rows: household_rows(),
                },
                BundleDoc {
                    id: "rec-01".into(),
                    kind: "record".into(),
                    heads: vec![],
                    bytes: bytes(b"\x85\x6f\x4a\x83document-rec-01"),
                    rows: record_rows(),
                },
                BundleDoc {
                    id: "task-01".into(),
                    kind: "task".into(),
                    heads: vec![bytes(&[0x01; 32]), bytes(&[0xfe; 32])],
                    bytes: bytes(b"\x85\x6f\x4a\x83document-task-01"),
                    rows: task_rows(),
                },
            ],
            more: true,
            total_docs: Some(3),
        },
    );
    c.check(
        "full",
        RepairRequest {
            doc: "hh-01".into(),
            message: bytes(b"\x42sync-message"),
        },
    );
    c.check("empty", EstimateRequest {});
    c.check(
        "two_grids",
        EstimateResponse {
            server_time_ms: NOW,
            grids: vec![
                GridEstimate {
                    grid: "东城-01".into(),
                    docs: 3_214,
                    bytes: 2_640_118,
                },
                GridEstimate {
                    grid: "东城-02".into(),
                    docs: 0,
                    bytes: 0,
                },
            ],
        },
    );
    c.check("in_sync", RepairResponse { message: None });
    c.check(
        "message",
        RepairResponse {
            message: Some(bytes(b"\x42reply")),
        },
    );
    c.check(
        "community",
        EscalateRequest {
            task: "task-01".into(),
            tier: "community".into(),
            unit: None,
        },
    );
    c.check(
        "unit",
        EscalateRequest {
            task: "task-01".into(),
            tier: "unit".into(),
            unit: Some("区民政局".into()),
        },
    );
    c.check(
        "full",
        EscalateResponse {
            server_time_ms: NOW,
        },
    );
    c.check(
        "purge",
        ErrorBody {
            code: "purge".into(),
            message: "grid 东城-02 is no longer granted".into(),
            purge_grids: vec!["东城-02".into()],
        },
    );
}

/// The names of the types `proto.rs` derives `Serialize` for.
fn serialized_types_of_proto() -> BTreeSet<String> {
    let src = include_str!("../src/sync/proto.rs");
    let mut out = BTreeSet::new();
    let mut derives_serialize = false;
    for line in src.lines().map(str::trim) {
        if line.starts_with("#[derive(") {
            derives_serialize = line.contains("Serialize");
        } else if let Some(rest) = line
            .strip_prefix("pub struct ")
            .or_else(|| line.strip_prefix("pub enum "))
        {
            if derives_serialize {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
            derives_serialize = false;
        } else if line.starts_with("mod ") || line.starts_with("#[cfg(test)]") {
            break;
        }
    }
    out
}

#[test]
fn every_message_matches_its_byte_fixture() {
    let mut c = Checker::default();
    all_cases(&mut c);

    // Every serializable type of proto.rs has a fixture of its own or inside a parent's.
    let types = serialized_types_of_proto();
    assert!(
        types.contains("PushRequest") && types.contains("ErrorBody"),
        "{types:?}"
    );
    for t in &types {
        let nested = NESTED.iter().find(|(n, _)| n == t);
        match nested {
            Some((_, parent)) if c.types.contains(*parent) => {}
            Some((_, parent)) => c
                .problems
                .push(format!("{t}: its parent {parent} has no fixture")),
            None if c.types.contains(t) => {}
            None => c.problems.push(format!(
                "{t} (proto.rs) has no fixture: add a value to all_cases in {}",
                file!()
            )),
        }
    }
    for (n, _) in NESTED {
        if !types.contains(*n) {
            c.problems
                .push(format!("{n} is listed in NESTED but not in proto.rs"));
        }
    }

    // No fixture without a value (a message removed or renamed without its file).
    let listed: Vec<String> = std::fs::read_dir(dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for file in listed {
        let case = file.strip_suffix(".msgpack.zst").unwrap_or(&file);
        if !c.cases.contains(case) {
            if blessing() {
                std::fs::remove_file(dir().join(&file)).expect("remove stale fixture");
                c.blessed.push(format!("{file} (removed)"));
            } else {
                c.problems
                    .push(format!("{file}: a fixture no value stands for"));
            }
        }
    }

    for n in &c.notes {
        eprintln!("note: {n}");
    }
    for b in &c.blessed {
        eprintln!("blessed: {b}");
    }
    assert!(
        c.problems.is_empty(),
        "{} wire fixture problem(s):\n- {}",
        c.problems.len(),
        c.problems.join("\n- ")
    );
}
