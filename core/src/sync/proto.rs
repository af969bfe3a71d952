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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grid: String,
    /// A [`crate::model::Role`] string.
    pub role: String,
    /// For 楼门长: the buildings they may see and write; empty = the whole grid.
    #[serde(default)]
    pub buildings: Vec<String>,
}

/// The phone exchanges the one-time code printed at the station for tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub code: String,
    /// A label for the device list ("王伟's phone").
    pub device_name: String,
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
    #[error("body larger than {MAX_BODY_BYTES} bytes once decompressed")]
    TooLarge,
    #[error("body is not a valid message: {0}")]
    Format(String),
}

/// Serializes and compresses a body.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let raw = rmp_serde::to_vec_named(value).unwrap_or_default();
    zstd::bulk::compress(&raw, 3).unwrap_or_default()
}

/// Decompresses (bounded by [`MAX_BODY_BYTES`]) and deserializes a body.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, WireError> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(body)
        .map_err(|e| WireError::Compression(e.to_string()))?;
    let mut raw = Vec::new();
    decoder
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| WireError::Compression(e.to_string()))?;
    if raw.len() > MAX_BODY_BYTES {
        return Err(WireError::TooLarge);
    }
    rmp_serde::from_slice(&raw).map_err(|e| WireError::Format(e.to_string()))
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
        });
        round_trip(EnrollResponse {
            device: "dev-1".into(),
            user: "u-wang".into(),
            user_name: "王伟".into(),
            grants: vec![Grant {
                grid: "g1".into(),
                role: "楼门长".into(),
                buildings: vec!["3号楼".into()],
            }],
            tokens: TokenResponse {
                access_token: "a".into(),
                access_expires_ms: 5,
                refresh_token: "r".into(),
            },
            server_time_ms: 7,
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
        });
        round_trip(BootstrapRequest {
            grid: "g".into(),
            after: Some("hh-9".into()),
            limit: 100,
        });
        round_trip(Bundle {
            server_time_ms: 1,
            grid: "g".into(),
            cursor: 7,
            projection_version: 1,
            docs: vec![],
            more: true,
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
    }
}
