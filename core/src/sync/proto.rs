//! The sync protocol's wire types, shared by the client engine and the server.
//!
//! **Compatibility boundary.** Every request and response body is MessagePack (named fields,
//! via `rmp-serde`) compressed as one zstd frame; see [`encode`] / [`decode`]. Adding an
//! optional field (with `#[serde(default)]`) is compatible; anything else bumps
//! [`PROTOCOL_VERSION`], which travels in the `x-xiuhua-protocol` header of every request.
//! Round-trip tests below pin the encoding.
//!
//! Endpoints (all `POST` with a body, except `GET /healthz` and `GET /metrics`):
//!
//! | path | request | response | auth |
//! |---|---|---|---|
//! | `/v1/enroll` | [`EnrollRequest`] | [`EnrollResponse`] | the one-time code |
//! | `/v1/refresh` | [`RefreshRequest`] | [`TokenResponse`] | the refresh token |
//! | `/v1/push` | [`PushRequest`] | [`PushResponse`] | access token |
//! | `/v1/pull` | [`PullRequest`] | [`PullResponse`] | access token |
//! | `/v1/bootstrap` | [`BootstrapRequest`] | [`Bundle`] | access token |
//! | `/v1/repair` | [`RepairRequest`] | [`RepairResponse`] | access token |
//! | `/v1/escalate` | [`EscalateRequest`] | [`EscalateResponse`] | access token |
//!
//! Errors are an HTTP 4xx/5xx status with an [`ErrorBody`].

use serde::{Deserialize, Serialize};

use crate::store::Rows;

/// Version of this protocol.
pub const PROTOCOL_VERSION: u32 = 1;
/// Header carrying [`PROTOCOL_VERSION`].
pub const PROTOCOL_HEADER: &str = "x-xiuhua-protocol";
/// Content type of every body.
pub const CONTENT_TYPE: &str = "application/x-xiuhua+msgpack+zstd";
/// Largest decompressed body either side accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A grant: what a user may do in one grid (a 楼门长 only in some buildings of it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grid: String,
    /// A [`crate::model::Role`] string.
    pub role: String,
    /// For 楼门长: the buildings they may see and write; empty = the whole grid.
    #[serde(default)]
    pub buildings: Vec<String>,
    /// The grid's community (its id), whose numbers the grid's records and tasks take
    /// ([`crate::numbers`]); empty from a server that predates numbers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub community: String,
    /// The community's short name, the numbers' first part (金湖 of 金湖社区).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub number_prefix: String,
}

/// The phone exchanges the one-time code printed at the station for tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub code: String,
    /// A label for the device list ("王伟's phone").
    pub device_name: String,
    /// The device this phone's data was written as, when the phone holds data from an
    /// earlier enrollment (credentials lost, device reset or re-admitted, a long time
    /// away): the new device succeeds it, and the server then accepts that device's
    /// changes from the new one, so the outbox syncs. The code must be for the same user:
    /// else the server answers `409 other_user` and the code stays unspent (a handover to
    /// another user needs an empty outbox; see `core::sync::enroll_store`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The device id the server assigned; also the device's Automerge actor id. The server
    /// refuses changes of this actor from any other device.
    pub device: String,
    pub user: String,
    pub user_name: String,
    pub grants: Vec<Grant>,
    pub tokens: TokenResponse,
    /// The server's time when it enrolled the device (ms since the epoch; 0 from a server
    /// that predates the field): anchors the new device's clock before its first write.
    #[serde(default)]
    pub server_time_ms: i64,
    /// The new device's first blocks of numbers (one per community of its grants), so that
    /// what it logs before its first sync gets real numbers ([`crate::numbers`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub number_blocks: Vec<crate::numbers::NumberBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// When the access token expires (server ms).
    pub access_expires_ms: i64,
    /// A new refresh token (rotated on every refresh); the old one is revoked.
    pub refresh_token: String,
}

/// The changes of one document in a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocChanges {
    pub doc: String,
    /// Automerge changes in their binary encoding.
    pub changes: Vec<serde_bytes::ByteBuf>,
}

/// Local outbox changes, grouped per document. One push is one server transaction: all of
/// it is stored or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRequest {
    pub docs: Vec<DocChanges>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    pub server_time_ms: i64,
    /// Changes stored now.
    pub stored: u64,
    /// Changes the server already had (a retried push): harmless.
    pub duplicates: u64,
    /// Where each touched grid's feed stands now.
    pub grid_seqs: Vec<GridSeq>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridSeq {
    pub grid: String,
    pub seq: u64,
}

/// Asks for a grid's changes after `since`, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub grid: String,
    pub since: u64,
    pub limit: u32,
    /// How long the server may hold the request open waiting for a change when there is none
    /// (long poll); 0 = answer at once.
    #[serde(default)]
    pub wait_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulledChange {
    pub seq: u64,
    pub doc: String,
    pub change: serde_bytes::ByteBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResponse {
    pub server_time_ms: i64,
    pub grid: String,
    pub changes: Vec<PulledChange>,
    /// The cursor to store once these changes are applied.
    pub next: u64,
    /// More changes wait after `next`.
    pub more: bool,
    /// For a device limited to some buildings (楼门长): documents that moved out of its
    /// buildings up to `next` (a household whose address changed, and the records and tasks
    /// that follow it). The device removes them, setting their unpushed changes aside, in the
    /// transaction that stores `next`. Empty from a server that predates the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved_out: Vec<String>,
    /// Documents that moved into its buildings up to `next`: their history before the move
    /// was never in its feed, so the device fetches each whole (`/v1/repair`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved_in: Vec<String>,
}

/// A fresh device asks for a grid's snapshot, one page at a time: a large grid's bundle would
/// exceed [`MAX_BODY_BYTES`]. Pages hold documents ordered by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapRequest {
    pub grid: String,
    /// The last document id of the previous page; none for the first page.
    #[serde(default)]
    pub after: Option<String>,
    /// Most documents in the page; 0 = the server's default. The server caps it
    /// ([`BOOTSTRAP_MAX_PAGE`]).
    #[serde(default)]
    pub limit: u32,
    /// A scope bootstrap: only the documents of these buildings (within the caller's
    /// grant), for buildings newly granted on a grid the device holds. Empty = every
    /// document the caller may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buildings: Vec<String>,
}

/// `POST /v1/session` (authenticated, sent at the start of every sync): who the device is
/// now and what it may do. The grants follow the directory: a sync bootstraps new grids
/// and buildings and drops what a narrowed grant no longer covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// What the phone holds of each community's numbers, so that the server hands it a new
    /// block when it runs low and sends again a block whose reply was lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<crate::numbers::NumberHeld>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResponse {
    pub server_time_ms: i64,
    pub device: String,
    pub user: String,
    pub user_name: String,
    /// The user's current grants.
    pub grants: Vec<Grant>,
    /// The users of the granted grids (names and roles only), for the assignee picker.
    /// `None` from a server that predates it: the phone keeps what it had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub people: Option<Vec<GridPerson>>,
    /// Blocks of numbers reserved for this device (new ones, and ones whose reply was lost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub number_blocks: Vec<crate::numbers::NumberBlock>,
}

/// A user holding a grant on a grid: what the assignee picker shows, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridPerson {
    pub grid: String,
    pub user: String,
    pub name: String,
    /// A [`crate::model::Role`] string.
    pub role: String,
}

/// The default and largest number of documents in one bootstrap page.
pub const BOOTSTRAP_MAX_PAGE: u32 = 10_000;

/// One document in a bundle: its bytes, and its projection rows so the device can store it
/// without loading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleDoc {
    pub id: String,
    /// A [`crate::doc::DocKind`] string.
    pub kind: String,
    /// The document's heads (32-byte hashes) the bytes and rows were computed at. May be
    /// empty: the saved bytes carry the heads, and the server leaves them out to keep the
    /// bundle small.
    #[serde(default)]
    pub heads: Vec<serde_bytes::ByteBuf>,
    /// `save_nocompress()` output: the bundle is compressed as one stream.
    pub bytes: serde_bytes::ByteBuf,
    /// Projection rows at [`Bundle::projection_version`].
    pub rows: Rows,
}

/// A grid's snapshot (one page of it) plus the cursor to pull from afterwards.
///
/// Every page carries the grid's seq read in the same transaction as that page. A client
/// bootstrapping in pages stores the cursor of the **first** page, once the last page is
/// stored: later pages may hold documents with changes made after that cursor, and pulling
/// from it re-delivers those changes as harmless duplicates, while a document changed
/// between pages is never missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub server_time_ms: i64,
    pub grid: String,
    pub cursor: u64,
    /// When it differs from the device's [`crate::store::PROJECTION_VERSION`], the device
    /// ignores `rows` and computes its own.
    pub projection_version: i64,
    pub docs: Vec<BundleDoc>,
    /// More documents follow: ask again with `after` = the id of the last document here.
    #[serde(default)]
    pub more: bool,
    /// On a bundle's first page: how many documents the whole bundle holds, so the progress
    /// bar knows its total from the start. `None` on later pages and from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_docs: Option<u64>,
}

/// `/v1/estimate`: how big a first sync will be, asked before it starts (the body names
/// nothing: the answer covers every grid the caller holds a grant on, in its scope).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EstimateRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstimateResponse {
    pub server_time_ms: i64,
    pub grids: Vec<GridEstimate>,
}

/// One grid's size as the caller would bootstrap it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridEstimate {
    pub grid: String,
    /// Documents in the caller's scope (households, 民情 records, tasks).
    pub docs: u64,
    /// Their stored size (documents and rows, before compression): an upper bound of what
    /// the bootstrap downloads.
    pub bytes: u64,
}

/// Automerge's sync protocol for one document whose heads disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRequest {
    pub doc: String,
    /// An encoded `automerge::sync::Message`.
    pub message: serde_bytes::ByteBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairResponse {
    /// The server's reply message, or none when the document is in sync.
    pub message: Option<serde_bytes::ByteBuf>,
}

/// Moves a task up a tier (grid → community → linked unit): a server-checked operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalateRequest {
    pub task: String,
    /// A [`crate::model::Tier`] string.
    pub tier: String,
    #[serde(default)]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalateResponse {
    pub server_time_ms: i64,
}

/// Sent with every 4xx/5xx.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code: `unauthorized`, `forbidden`, `bad_request`,
    /// `too_large`, `conflict`, `purge`, `unsupported_protocol`, `internal`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Grids the device must purge (grant revoked), with `code = "purge"` or on any reply.
    #[serde(default)]
    pub purge_grids: Vec<String>,
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("body is not zstd: {0}")]
    Compression(String),
    #[error("body larger than {0} bytes once decompressed")]
    TooLarge(usize),
    #[error("body holds more than {0} MessagePack items")]
    TooManyItems(usize),
    #[error("body is not a valid message: {0}")]
    Format(String),
}

/// What one decoder may spend on a body, whatever the body claims: the decompressed size and
/// the number of MessagePack items (each becomes at most one Rust value, so the memory of the
/// result is bounded by about `max_bytes + max_items × 128` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_bytes: usize,
    pub max_items: usize,
}

impl DecodeLimits {
    /// What [`decode`] allows (the client's replies): [`MAX_BODY_BYTES`], items unbounded
    /// beyond that (every item takes at least one byte).
    pub const REPLY: DecodeLimits = DecodeLimits {
        max_bytes: MAX_BODY_BYTES,
        max_items: MAX_BODY_BYTES,
    };
}

/// Largest zstd window a bounded decoder accepts (log2: 8 MiB). [`encode`] uses level 3,
/// whose window is 2 MiB at most.
const WINDOW_LOG_MAX: u32 = 23;

/// Serializes and compresses a body.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let raw = rmp_serde::to_vec_named(value).unwrap_or_default();
    zstd::bulk::compress(&raw, 3).unwrap_or_default()
}

/// Decompresses (bounded by [`MAX_BODY_BYTES`]) and deserializes a body.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, WireError> {
    decode_within(body, &DecodeLimits::REPLY)
}

/// Decompresses at most `limits.max_bytes` (the zstd window capped too), checks the
/// MessagePack structure with at most `limits.max_items` items before anything is
/// allocated for them, then deserializes.
pub fn decode_within<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    limits: &DecodeLimits,
) -> Result<T, WireError> {
    use std::io::Read;
    let mut decoder = zstd::stream::read::Decoder::new(body)
        .map_err(|e| WireError::Compression(e.to_string()))?;
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| WireError::Compression(e.to_string()))?;
    let mut raw = Vec::new();
    decoder
        .take(limits.max_bytes as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| WireError::Compression(e.to_string()))?;
    if raw.len() > limits.max_bytes {
        return Err(WireError::TooLarge(limits.max_bytes));
    }
    scan_msgpack(&raw, limits.max_items)?;
    rmp_serde::from_slice(&raw).map_err(|e| WireError::Format(e.to_string()))
}

/// Walks one MessagePack value without building it: every length must fit in the bytes left
/// and the count of items stays under `max_items`. Linear time, constant memory.
fn scan_msgpack(raw: &[u8], max_items: usize) -> Result<(), WireError> {
    let bad = |what: &str| WireError::Format(format!("MessagePack: {what}"));
    let mut pos = 0usize;
    // Items still to read; each takes at least one byte, so it never exceeds what is left.
    let mut pending: usize = 1;
    let mut items = 0usize;
    let be = |pos: usize, n: usize| -> Result<usize, WireError> {
        let b = raw
            .get(pos..pos + n)
            .ok_or_else(|| bad("truncated length"))?;
        Ok(b.iter().fold(0usize, |acc, x| (acc << 8) | usize::from(*x)))
    };
    while pending > 0 {
        pending -= 1;
        items += 1;
        if items > max_items {
            return Err(WireError::TooManyItems(max_items));
        }
        let m = *raw.get(pos).ok_or_else(|| bad("truncated"))?;
        pos += 1;
        // (extra bytes to skip, child items)
        let (skip, children) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * usize::from(m & 0x0f)),
            0x90..=0x9f => (0, usize::from(m & 0x0f)),
            0xa0..=0xbf => (usize::from(m & 0x1f), 0),
            0xc1 => return Err(bad("reserved marker")),
            0xc4 | 0xd9 => (1 + be(pos, 1)?, 0),
            0xc5 | 0xda => (2 + be(pos, 2)?, 0),
            0xc6 | 0xdb => (4 + be(pos, 4)?, 0),
            0xc7 => (2 + be(pos, 1)?, 0),
            0xc8 => (3 + be(pos, 2)?, 0),
            0xc9 => (5 + be(pos, 4)?, 0),
            0xca => (4, 0),
            0xcb => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 => (4, 0),
            0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (2, be(pos, 2)?),
            0xdd => (4, be(pos, 4)?),
            0xde => (2, 2 * be(pos, 2)?),
            0xdf => (4, be(pos, 4)?.saturating_mul(2)),
        };
        pos = pos
            .checked_add(skip)
            .filter(|p| *p <= raw.len())
            .ok_or_else(|| bad("length past the end"))?;
        pending = pending.saturating_add(children);
        if pending > raw.len() - pos {
            return Err(bad("more items claimed than bytes left"));
        }
    }
    if pos != raw.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_bytes::ByteBuf;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(v: T) {
        let bytes = encode(&v);
        let back: T = decode(&bytes).expect("decodes");
        assert_eq!(back, v);
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(EnrollRequest {
            code: "483-921".into(),
            device_name: "王伟的手机".into(),
            previous_device: None,
        });
        round_trip(EnrollRequest {
            code: "483-921".into(),
            device_name: "王伟的手机".into(),
            previous_device: Some("dev-0".into()),
        });
        round_trip(EnrollResponse {
            device: "dev-1".into(),
            user: "u-wang".into(),
            user_name: "王伟".into(),
            grants: vec![Grant {
                grid: "g1".into(),
                role: "楼门长".into(),
                buildings: vec!["3号楼".into()],
                community: "c-jinhu".into(),
                number_prefix: "金湖".into(),
            }],
            tokens: TokenResponse {
                access_token: "a".into(),
                access_expires_ms: 5,
                refresh_token: "r".into(),
            },
            server_time_ms: 7,
            number_blocks: vec![],
        });
        round_trip(PushRequest {
            docs: vec![DocChanges {
                doc: "hh-1".into(),
                changes: vec![ByteBuf::from(vec![1, 2, 3])],
            }],
        });
        round_trip(PushResponse {
            server_time_ms: 1,
            stored: 2,
            duplicates: 3,
            grid_seqs: vec![GridSeq {
                grid: "g".into(),
                seq: 9,
            }],
        });
        round_trip(PullRequest {
            grid: "g".into(),
            since: 10,
            limit: 500,
            wait_ms: 0,
        });
        round_trip(PullResponse {
            server_time_ms: 1,
            grid: "g".into(),
            changes: vec![PulledChange {
                seq: 11,
                doc: "d".into(),
                change: ByteBuf::from(vec![9]),
            }],
            next: 11,
            more: true,
            moved_out: vec!["hh-2".into()],
            moved_in: vec!["hh-3".into()],
        });
        round_trip(BootstrapRequest {
            grid: "g".into(),
            after: Some("hh-9".into()),
            limit: 100,
            buildings: vec!["1号楼".into()],
        });
        round_trip(Bundle {
            server_time_ms: 1,
            grid: "g".into(),
            cursor: 7,
            projection_version: 1,
            docs: vec![],
            more: true,
            total_docs: Some(12),
        });
        round_trip(EstimateResponse {
            server_time_ms: 1,
            grids: vec![GridEstimate {
                grid: "g".into(),
                docs: 12,
                bytes: 3_000,
            }],
        });
        round_trip(RepairRequest {
            doc: "d".into(),
            message: ByteBuf::from(vec![0]),
        });
        round_trip(RepairResponse { message: None });
        round_trip(EscalateRequest {
            task: "t".into(),
            tier: "community".into(),
            unit: None,
        });
        round_trip(ErrorBody {
            code: "forbidden".into(),
            message: "no grant".into(),
            purge_grids: vec![],
        });
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<PullRequest>(b"not zstd at all").is_err());
        let not_msgpack = zstd::bulk::compress(b"\xff\xff\xff", 3).expect("compress");
        assert!(matches!(
            decode::<PullRequest>(&not_msgpack),
            Err(WireError::Format(_))
        ));
    }

    #[test]
    fn bounded_decoding_refuses_before_building() {
        // 2 million empty documents in 6 MB of MessagePack (a few KB compressed) would be
        // 100 MB of Rust values.
        let docs: Vec<DocChanges> = (0..2_000_000)
            .map(|_| DocChanges {
                doc: String::new(),
                changes: vec![],
            })
            .collect();
        let body = encode(&PushRequest { docs });
        assert!(body.len() < 100_000, "{}", body.len());
        let roomy = DecodeLimits {
            max_bytes: 64 << 20,
            max_items: 10_000,
        };
        assert!(matches!(
            decode_within::<PushRequest>(&body, &roomy),
            Err(WireError::TooManyItems(10_000))
        ));
        let tight = DecodeLimits {
            max_bytes: 4096,
            max_items: 1 << 30,
        };
        assert!(matches!(
            decode_within::<PushRequest>(&body, &tight),
            Err(WireError::TooLarge(4096))
        ));
        // An array claiming 2^32-1 elements in a few bytes.
        let claim = zstd::bulk::compress(
            &[
                0x81, 0xa4, b'd', b'o', b'c', b's', 0xdd, 0xff, 0xff, 0xff, 0xff,
            ],
            3,
        )
        .unwrap();
        assert!(matches!(
            decode_within::<PushRequest>(&claim, &roomy),
            Err(WireError::Format(_))
        ));
        // What fits decodes, and every marker kind is walked.
        let ok = PushRequest {
            docs: vec![DocChanges {
                doc: "hh-1".into(),
                changes: vec![ByteBuf::from(vec![7; 300]), ByteBuf::from(vec![1; 70_000])],
            }],
        };
        assert_eq!(
            decode_within::<PushRequest>(&encode(&ok), &roomy).unwrap(),
            ok
        );
        let mixed = (
            -1i64,
            200u8,
            70_000u32,
            5_000_000_000u64,
            -200i16,
            -70_000i32,
            1.5f64,
            true,
            (),
            "x".repeat(40),
            "y".repeat(300),
            vec![0u8; 20],
        );
        let mixed_bytes = encode(&mixed);
        assert!(decode_within::<serde_json::Value>(&mixed_bytes, &roomy).is_ok());
    }

    #[test]
    fn a_missing_optional_field_still_decodes() {
        #[derive(Serialize)]
        struct OldPull {
            grid: String,
            since: u64,
            limit: u32,
        }
        let bytes = encode(&OldPull {
            grid: "g".into(),
            since: 1,
            limit: 2,
        });
        let p: PullRequest = decode(&bytes).expect("decodes");
        assert_eq!(p.wait_ms, 0);

        #[derive(Serialize)]
        struct OldBootstrap {
            grid: String,
        }
        let b: BootstrapRequest = decode(&encode(&OldBootstrap { grid: "g".into() })).unwrap();
        assert_eq!((b.after, b.limit), (None, 0));

        #[derive(Serialize)]
        struct OldPullResponse {
            server_time_ms: i64,
            grid: String,
            changes: Vec<PulledChange>,
            next: u64,
            more: bool,
        }
        let r: PullResponse = decode(&encode(&OldPullResponse {
            server_time_ms: 1,
            grid: "g".into(),
            changes: vec![],
            next: 3,
            more: false,
        }))
        .unwrap();
        assert!(r.moved_out.is_empty() && r.moved_in.is_empty());
    }
}
