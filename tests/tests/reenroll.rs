//! Re-enrollment keeps the work, a handover needs it synced (issue 9, item 2), against the
//! real server binary: a phone whose credentials died enrolls again with a code for the
//! same user and its outbox syncs as the new device's; a code for another user is refused
//! while work is unsynced (and left unspent), then erases the phone once it is synced; the
//! server never lets a device take over another user's device.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xiuhua_core::Error;
use xiuhua_core::model::NewVisit;
use xiuhua_core::sync::EnrollKind;
use xiuhua_core::sync::proto::{EnrollRequest, EnrollResponse, RefreshRequest, TokenResponse};
use xiuhua_e2e::*;

fn refresh(url: &str, token: &str) -> Reply<TokenResponse> {
    call(
        url,
        "/v1/refresh",
        None,
        &RefreshRequest {
            refresh_token: token.to_string(),
        },
    )
}

/// Kills the device's refresh family the way the server does on theft: a spent token
/// presented after its child was used. The phone then needs a new enrollment.
fn kill_credentials(d: &Device) {
    let first = d.store.credentials().unwrap().unwrap().refresh_token;
    let child = refresh(&d.url, &first).ok();
    refresh(&d.url, &child.refresh_token).ok();
    refresh(&d.url, &first).refused(401);
}

fn enroll_raw(url: &str, code: &str, previous: Option<&str>) -> Reply<EnrollResponse> {
    call(
        url,
        "/v1/enroll",
        None,
        &EnrollRequest {
            code: code.to_string(),
            device_name: "raw".into(),
            previous_device: previous.map(str::to_string),
        },
    )
}

#[test]
fn a_phone_whose_credentials_died_enrolls_again_and_its_outbox_syncs() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    let mut chen = server.enroll("u-chen");
    wang.sync().unwrap();
    chen.sync().unwrap();
    let old_device = wang.id.clone();

    // Offline work, then the credentials die before it reaches the station.
    let h = wang
        .store
        .create_household(household("g1", "1号楼", "101", "张三"))
        .unwrap();
    wang.store
        .add_visit(
            &h,
            NewVisit {
                purpose: "入户走访".into(),
                note: "独居老人".into(),
                follow_up: None,
            },
        )
        .unwrap();
    kill_credentials(&wang);
    let e = wang.sync().unwrap_err();
    assert!(e.needs_enrollment(), "{e}");
    let waiting = wang.store.unsynced_work().unwrap();
    assert_eq!((waiting.changes, waiting.documents), (2, 1), "{waiting:?}");

    // A new code for the same user: the store and its outbox are kept.
    let done = wang.enroll_again(&server.enroll_code("u-wang")).unwrap();
    assert_eq!(
        done.kind,
        EnrollKind::Continued {
            previous: old_device.clone()
        }
    );
    assert_ne!(wang.id, old_device);
    assert_eq!(
        wang.store.actor().device,
        wang.id,
        "new writes sign as the new device"
    );
    assert_eq!(wang.store.unsynced_work().unwrap(), waiting);

    // The old device's changes go up from the new device and reach everyone.
    let r = wang.sync().unwrap();
    assert_eq!(r.pushed, 2, "{r:?}");
    assert!(r.rejected.is_empty(), "{r:?}");
    assert!(wang.store.unsynced_work().unwrap().is_empty());
    chen.sync().unwrap();
    let seen = chen.store.household(&h).unwrap();
    assert_eq!(seen.visits.len(), 1);

    // Work after the re-enrollment is the new device's and syncs too.
    wang.store
        .add_visit(
            &h,
            NewVisit {
                purpose: "回访".into(),
                note: String::new(),
                follow_up: None,
            },
        )
        .unwrap();
    assert_eq!(wang.sync().unwrap().pushed, 1);
    chen.sync().unwrap();
    assert_eq!(chen.store.household(&h).unwrap().visits.len(), 2);

    // The station's device list shows the succession: the old device reset, the new one
    // naming it.
    let listed = server.admin(&["devices", "--user", "u-wang"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&old_device) && l.ends_with("\treset")),
        "{listed}"
    );
    assert!(
        listed.lines().any(|l| l.starts_with(&wang.id)
            && l.contains(&format!("\t{old_device}\t"))
            && l.ends_with("\tactive")),
        "{listed}"
    );
}

#[test]
fn a_code_for_another_user_is_refused_while_work_is_unsynced_then_hands_the_phone_over() {
    let server = Server::with_directory();
    let mut wang = server.enroll("u-wang");
    wang.sync().unwrap();
    let h = wang
        .store
        .create_household(household("g1", "2号楼", "201", "李四"))
        .unwrap();
    let before = wang.store.credentials().unwrap().unwrap();

    let code = server.enroll_code("u-zhao");
    match wang.enroll_again(&code) {
        Err(Error::UnsyncedWork {
            changes, documents, ..
        }) => assert_eq!((changes, documents), (1, 1)),
        other => panic!("expected UnsyncedWork, got {other:?}"),
    }
    // Nothing changed on the phone, and the code was not spent.
    assert_eq!(wang.store.credentials().unwrap().unwrap(), before);
    assert_eq!(wang.store.unsynced_work().unwrap().changes, 1);
    assert!(wang.store.household(&h).is_ok());

    // Synced first: the same code now hands the phone over, erasing wang's data.
    wang.sync().unwrap();
    let done = wang.enroll_again(&code).unwrap();
    assert!(
        matches!(done.kind, EnrollKind::HandedOver { documents } if documents >= 1),
        "{:?}",
        done.kind
    );
    assert_eq!(wang.store.actor().user, "u-zhao");
    assert!(
        wang.store.household(&h).is_err(),
        "the old user's data is gone"
    );
    // The new user's sync brings what their grants cover (community c1: g1 and g2).
    let r = wang.sync().unwrap();
    assert!(r.bootstrapped_docs >= 1, "{r:?}");
    assert_eq!(wang.store.household(&h).unwrap().visits.len(), 0);
}

#[test]
fn the_server_lets_a_device_succeed_only_a_device_of_the_same_user() {
    let server = Server::with_directory();
    let wang = server.enroll("u-wang");
    let chen = server.enroll("u-chen");

    // Chen's code naming wang's device: refused, and the code is still good.
    let code = server.enroll_code("u-chen");
    let e = enroll_raw(&server.url, &code, Some(&wang.id)).refused(409);
    assert_eq!(e.code, "other_user");
    // A device this server never issued: refused alike, the code still good.
    let e = enroll_raw(&server.url, &code, Some("d-from-another-server")).refused(409);
    assert_eq!(e.code, "unknown_device");
    // A wrong code is a plain 401 whatever device it names (no oracle of devices).
    let e = enroll_raw(&server.url, "AAAA-BBBB-CCCC", Some(&wang.id)).refused(401);
    assert_ne!(e.code, "other_user");
    // An oversized or control-character device name is a 400, the code still good.
    enroll_raw(&server.url, &code, Some(&"d".repeat(65))).refused(400);
    enroll_raw(&server.url, &code, Some("d-\u{7}")).refused(400);
    // Naming chen's own device succeeds and retires it.
    let new = enroll_raw(&server.url, &code, Some(&chen.id)).ok();
    assert_eq!(new.user, "u-chen");
    let (status, _) = post_raw(&server.url, "/v1/session", Some(&chen.token()), Vec::new());
    assert_eq!(status, 401, "the succeeded device's tokens are refused");
    // Wang's device is untouched.
    let (status, _) = post_raw(
        &server.url,
        "/v1/session",
        Some(&wang.token()),
        xiuhua_core::sync::proto::encode(&xiuhua_core::sync::proto::SessionRequest::default()),
    );
    assert_eq!(status, 200);
}
