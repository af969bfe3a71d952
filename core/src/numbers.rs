//! Numbers for people: every 民情 record and 代办 task gets a number such as
//! `金湖-2026-000123` when it is created, offline, to give the resident.
//!
//! The rules, written once and used by the phone and the server:
//!
//! - A number is `<community>-<year>-<sequence>`: the community's short name (its name
//!   without 社区), the year in China time (UTC+8) of the creation, and a sequence of at
//!   least six digits, counted per community and year.
//! - The server hands each device **blocks** of sequences ([`BLOCK_SIZE`] each) at the start
//!   of a sync (`/v1/session`); a block belongs to one device, so two phones offline at once
//!   never give the same number. The phone asks for a new block while it holds fewer than
//!   [`LOW_WATER`] unused numbers of the community and year; a reply lost on the way is
//!   answered again at the next sync ([`NumberHeld::last_start`]), and a device gets at most
//!   [`MAX_BLOCKS_PER_DAY`] new blocks a day, so a hostile phone cannot run a community out.
//! - A phone with no number left gives a **provisional** number, `金湖-2026-临A1B2C3D4-7`
//!   (its device and a local count); its next sync replaces it with a number of a fresh
//!   block, and the document keeps the provisional one (`provisional_number`), so the record
//!   is found by either.

use serde::{Deserialize, Serialize};

/// Sequences in one block.
pub const BLOCK_SIZE: u64 = 100;
/// A phone holding fewer unused numbers than this (per community and year) asks for a block.
pub const LOW_WATER: u64 = 30;
/// New blocks one device may get per community and year in 24 hours.
pub const MAX_BLOCKS_PER_DAY: usize = 10;
/// The longest number a document may carry (a community name of 20 characters and room).
pub const MAX_NUMBER_CHARS: usize = 48;
/// The mark of a provisional number, between the year and the device.
pub const PROVISIONAL_MARK: &str = "临";

const CST_OFFSET_MS: i64 = 8 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What a phone holds of one community and year, sent with `/v1/session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberHeld {
    pub community: String,
    pub year: i32,
    /// Unused numbers left in its blocks.
    pub left: u64,
    /// The start of the latest block it received (0 for none): a block of the device that
    /// starts after it was reserved but its reply was lost, and is sent again.
    pub last_start: u64,
}

/// A block of sequences `[start, end)` of a community and year, reserved for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberBlock {
    pub community: String,
    /// The community's short name, the numbers' first part.
    pub prefix: String,
    pub year: i32,
    pub start: u64,
    pub end: u64,
}

/// A block the server has given a device: where it starts and when (server ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    pub start: u64,
    pub end: u64,
    pub at_ms: i64,
}

/// What the server does for one community and year of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Send these blocks (reserved earlier, their reply lost) again.
    Resend(Vec<Issued>),
    /// Reserve a new block.
    Reserve,
    /// Nothing: the phone holds enough, or reached the day's limit.
    Nothing,
}

/// The year in China time (UTC+8) of `ms`.
pub fn year_of(ms: i64) -> i32 {
    let days = ms.saturating_add(CST_OFFSET_MS).max(0) / DAY_MS;
    let (year, _, _) = crate::hlc::civil_date(u64::try_from(days).unwrap_or(0));
    i32::try_from(year).unwrap_or(i32::MAX)
}

/// The years a session hands out blocks for at server time `now_ms`: this year, and in
/// December the next one too (a phone away over the new year keeps giving real numbers).
pub fn years_for(now_ms: i64) -> Vec<i32> {
    let year = year_of(now_ms);
    if year_of(now_ms.saturating_add(31 * DAY_MS)) > year {
        vec![year, year + 1]
    } else {
        vec![year]
    }
}

/// A community's short name: its name without the trailing 社区 (金湖社区 → 金湖), or the
/// name itself when that would leave nothing; whitespace and `-` are dropped, so the number
/// splits at its dashes.
pub fn prefix_of(community_name: &str) -> String {
    let clean: String = community_name
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let short = clean.strip_suffix("社区").unwrap_or(&clean);
    let short = if short.is_empty() { &clean } else { short };
    short.chars().take(20).collect()
}

/// `金湖-2026-000123`.
pub fn format(prefix: &str, year: i32, seq: u64) -> String {
    format!("{prefix}-{year}-{seq:06}")
}

/// `金湖-2026-临A1B2C3D4-7`: the device's id (its first 8 hex digits) and a count of the
/// device's provisional numbers.
pub fn provisional(prefix: &str, year: i32, device: &str, count: u64) -> String {
    let dev = device_code(device);
    format!("{prefix}-{year}-{PROVISIONAL_MARK}{dev}-{count}")
}

/// The device part of a provisional number: the device id's first 8 letters and digits
/// (after the `d` of server-made ids), upper case.
pub fn device_code(device: &str) -> String {
    device
        .trim_start_matches('d')
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// A number read back into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts<'a> {
    pub prefix: &'a str,
    pub year: i32,
    pub kind: PartKind<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind<'a> {
    /// A real number's sequence.
    Real(u64),
    /// A provisional number's device code and count.
    Provisional { device: &'a str, count: u64 },
}

/// Reads `金湖-2026-000123` or `金湖-2026-临1A2B3C4D-7`; `None` for anything else.
pub fn parse(number: &str) -> Option<Parts<'_>> {
    let mut it = number.splitn(3, '-');
    let (prefix, year, rest) = (it.next()?, it.next()?, it.next()?);
    if prefix.is_empty() || year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = year.parse().ok()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let kind = match rest.strip_prefix(PROVISIONAL_MARK) {
        Some(p) => {
            let (device, count) = p.split_once('-')?;
            if device.is_empty()
                || !device.bytes().all(|b| b.is_ascii_alphanumeric())
                || !digits(count)
            {
                return None;
            }
            PartKind::Provisional {
                device,
                count: count.parse().ok()?,
            }
        }
        None if digits(rest) && rest.len() >= 6 => PartKind::Real(rest.parse().ok()?),
        None => return None,
    };
    Some(Parts { prefix, year, kind })
}

/// A block a device holds, as the server checks a push against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnBlock {
    pub prefix: String,
    pub year: i32,
    pub start: u64,
    pub end: u64,
}

/// The numbers a document holds: (`number`, `provisional_number`).
pub type DocNumbers = (Option<String>, Option<String>);

/// Whether a push may change a document's numbers from `before` to `after` (the server's
/// check; `Ok` when they did not change). A number once given never changes, except a
/// provisional one for a real one, which keeps the provisional as `provisional_number`; a
/// number set is either a provisional one of the pushing device (`own_devices`: it and the
/// devices it succeeds) or one of a block reserved for it (`blocks`).
pub fn check_change(
    before: &DocNumbers,
    after: &DocNumbers,
    own_devices: &[String],
    blocks: &[OwnBlock],
) -> Result<(), String> {
    if before == after {
        return Ok(());
    }
    let own_provisional = |n: &str| {
        parse(n).is_some_and(|p| match p.kind {
            PartKind::Provisional { device, .. } => {
                own_devices.iter().any(|d| device_code(d) == device)
            }
            PartKind::Real(_) => false,
        })
    };
    if before.0 != after.0 {
        if let Some(old) = &before.0
            && !is_provisional(old)
        {
            return Err(format!("its number {old} was given and never changes"));
        }
        let Some(new) = &after.0 else {
            return Err("its number may not be removed".into());
        };
        let parts = parse(new)
            .ok_or_else(|| format!("{new:?} is not a number of the form 金湖-2026-000123"))?;
        match parts.kind {
            PartKind::Provisional { .. } if !own_provisional(new) => {
                return Err(format!(
                    "the provisional number {new} is not one of this device's"
                ));
            }
            PartKind::Provisional { .. } => {}
            PartKind::Real(seq) => {
                let held = blocks.iter().any(|b| {
                    b.prefix == parts.prefix
                        && b.year == parts.year
                        && b.start <= seq
                        && seq < b.end
                });
                if !held {
                    return Err(format!(
                        "the number {new} is not in a block reserved for this device"
                    ));
                }
            }
        }
        if let Some(old) = &before.0
            && after.1.as_ref() != Some(old)
        {
            return Err(format!(
                "a real number replacing the provisional {old} keeps it as provisional_number"
            ));
        }
    }
    if before.1 != after.1 {
        // Set once: to the provisional number the push replaced (or, for a document new in
        // this push and renumbered in it, a provisional number of this device).
        let kept = after.1.as_deref().unwrap_or_default();
        let replaced =
            before.0.as_deref() == Some(kept) || (before.0.is_none() && own_provisional(kept));
        if before.1.is_some() || !replaced {
            return Err(
                "its provisional_number may only keep the provisional number a real one replaced"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Whether `number` is a provisional one.
pub fn is_provisional(number: &str) -> bool {
    parse(number).is_some_and(|p| matches!(p.kind, PartKind::Provisional { .. }))
}

/// The server's decision for one community and year: resend the device's blocks that start
/// after what the phone last received; else reserve one when the phone holds fewer than
/// [`LOW_WATER`] and the device got fewer than [`MAX_BLOCKS_PER_DAY`] in the last day.
/// `held` is what the phone said (none: it holds nothing of it); `issued` the device's
/// blocks of that community and year.
pub fn plan(held: Option<&NumberHeld>, issued: &[Issued], now_ms: i64) -> Plan {
    let (left, last_start) = held.map_or((0, 0), |h| (h.left, h.last_start));
    let lost: Vec<Issued> = issued
        .iter()
        .filter(|b| b.start > last_start)
        .copied()
        .collect();
    if !lost.is_empty() {
        return Plan::Resend(lost);
    }
    if left >= LOW_WATER {
        return Plan::Nothing;
    }
    let today = issued
        .iter()
        .filter(|b| now_ms.saturating_sub(b.at_ms) < DAY_MS)
        .count();
    if today >= MAX_BLOCKS_PER_DAY {
        Plan::Nothing
    } else {
        Plan::Reserve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1_2027_CST: i64 = 1_798_761_600_000 - CST_OFFSET_MS;

    #[test]
    fn the_year_is_chinas() {
        assert_eq!(year_of(JAN_1_2027_CST), 2027);
        assert_eq!(year_of(JAN_1_2027_CST - 1), 2026);
        assert_eq!(years_for(JAN_1_2027_CST - 10 * DAY_MS), vec![2026, 2027]);
        assert_eq!(years_for(JAN_1_2027_CST - 40 * DAY_MS), vec![2026]);
        assert_eq!(years_for(JAN_1_2027_CST), vec![2027]);
    }

    #[test]
    fn numbers_read_as_people_expect() {
        assert_eq!(prefix_of("金湖社区"), "金湖");
        assert_eq!(prefix_of(" 罗 河-社区 "), "罗河");
        assert_eq!(prefix_of("社区"), "社区");
        assert_eq!(format("金湖", 2026, 123), "金湖-2026-000123");
        assert_eq!(format("金湖", 2026, 1_234_567), "金湖-2026-1234567");
        let p = provisional("金湖", 2026, "d1a2b3c4d5e6f7a8b", 7);
        assert_eq!(p, "金湖-2026-临1A2B3C4D-7");
        assert!(is_provisional(&p));
        assert!(!is_provisional("金湖-2026-000123"));
    }

    #[test]
    fn the_server_resends_lost_blocks_and_limits_new_ones() {
        let now = JAN_1_2027_CST;
        let b = |start, at_ms| Issued {
            start,
            end: start + BLOCK_SIZE,
            at_ms,
        };
        let held = |left, last_start| NumberHeld {
            community: "c".into(),
            year: 2027,
            left,
            last_start,
        };
        assert_eq!(plan(None, &[], now), Plan::Reserve);
        assert_eq!(plan(Some(&held(5, 0)), &[], now), Plan::Reserve);
        assert_eq!(
            plan(Some(&held(LOW_WATER, 1)), &[b(1, now)], now),
            Plan::Nothing
        );
        // The reply of the block at 201 was lost: the phone still says 101.
        let issued = [b(1, now), b(101, now), b(201, now)];
        assert_eq!(
            plan(Some(&held(0, 101)), &issued, now),
            Plan::Resend(vec![b(201, now)])
        );
        // A phone that lost everything (reinstalled) gets its blocks again.
        assert_eq!(plan(None, &issued, now), Plan::Resend(issued.to_vec()));
        let many: Vec<Issued> = (0..MAX_BLOCKS_PER_DAY as u64)
            .map(|i| b(1 + i * BLOCK_SIZE, now - 1000))
            .collect();
        let last = many.last().map_or(0, |b| b.start);
        assert_eq!(plan(Some(&held(0, last)), &many, now), Plan::Nothing);
        assert_eq!(
            plan(Some(&held(0, last)), &many, now + DAY_MS),
            Plan::Reserve
        );
    }

    #[test]
    fn numbers_parse_back_into_their_parts() {
        assert_eq!(
            parse("金湖-2026-000123"),
            Some(Parts {
                prefix: "金湖",
                year: 2026,
                kind: PartKind::Real(123)
            })
        );
        assert_eq!(
            parse("金湖-2026-临1A2B3C4D-7"),
            Some(Parts {
                prefix: "金湖",
                year: 2026,
                kind: PartKind::Provisional {
                    device: "1A2B3C4D",
                    count: 7
                }
            })
        );
        for bad in [
            "",
            "金湖",
            "金湖-2026",
            "金湖-26-000001",
            "金湖-2026-12",
            "金湖-2026-00012a",
            "-2026-000001",
            "金湖-2026-临-7",
            "金湖-2026-临AB",
            "金湖-2026-临A B-1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_push_may_number_only_with_its_own_numbers_and_never_renumber() {
        let me = vec!["d1a2b3c4d5e6f7a8b".to_string()];
        let blocks = vec![OwnBlock {
            prefix: "金湖".into(),
            year: 2026,
            start: 101,
            end: 201,
        }];
        let n = |s: &str| Some(s.to_string());
        let check =
            |before: DocNumbers, after: DocNumbers| check_change(&before, &after, &me, &blocks);
        let mine = provisional("金湖", 2026, &me[0], 3);
        let others = provisional("金湖", 2026, "dffff0000", 3);
        // A new document: a number of its block, or a provisional one of its own.
        assert!(check((None, None), (n("金湖-2026-000101"), None)).is_ok());
        assert!(check((None, None), (n("金湖-2026-000200"), None)).is_ok());
        assert!(check((None, None), (n(&mine), None)).is_ok());
        assert!(
            check((None, None), (None, None)).is_ok(),
            "an older app's document"
        );
        for bad in [
            "金湖-2026-000201",
            "金湖-2026-000100",
            "金湖-2027-000150",
            "银湖-2026-000150",
            "nonsense",
        ] {
            assert!(check((None, None), (n(bad), None)).is_err(), "{bad}");
        }
        assert!(check((None, None), (n(&others), None)).is_err());
        // A document created and renumbered in the same push (its first sync).
        assert!(check((None, None), (n("金湖-2026-000150"), n(&mine))).is_ok());
        assert!(check((None, None), (n("金湖-2026-000150"), n(&others))).is_err());
        // The provisional number replaced by a real one, kept beside it.
        assert!(check((n(&mine), None), (n("金湖-2026-000150"), n(&mine))).is_ok());
        assert!(
            check((n(&mine), None), (n("金湖-2026-000150"), None)).is_err(),
            "it keeps the provisional one"
        );
        assert!(check((n(&mine), None), (n("金湖-2026-000150"), n(&others))).is_err());
        // A real number never changes, nor goes.
        let given = (n("金湖-2026-000150"), None);
        assert!(check(given.clone(), (n("金湖-2026-000151"), None)).is_err());
        assert!(check(given.clone(), (None, None)).is_err());
        assert!(check(given.clone(), (n("金湖-2026-000150"), n(&mine))).is_err());
        assert!(check(given.clone(), given.clone()).is_ok());
    }
}
