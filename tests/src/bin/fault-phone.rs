//! One sync of a phone's store file in its own process, for the fault suite's "killed
//! mid-sync" mode (the test kills this process with SIGKILL at a random moment).
//!
//! `fault-phone STORE URL USER NAME ROLE DEVICE`: opens the store as that actor, syncs once
//! with the server at URL, prints `done` (or `failed: …`) and exits 0; exit 2 on bad
//! arguments or a store that does not open.

use std::process::ExitCode;

use xiuhua_core::model::{Actor, Role};
use xiuhua_core::sync::http::HttpTransport;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, url, user, name, role, device] = args.as_slice() else {
        eprintln!("usage: fault-phone STORE URL USER NAME ROLE DEVICE");
        return ExitCode::from(2);
    };
    let actor = match Role::parse(role).and_then(|r| Actor::new(user, name, r, device)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bad actor: {e}");
            return ExitCode::from(2);
        }
    };
    let mut store = match xiuhua_core::Store::open(path, actor) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("the store does not open: {e}");
            return ExitCode::from(2);
        }
    };
    let mut transport = match HttpTransport::new(url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bad URL: {e}");
            return ExitCode::from(2);
        }
    };
    println!("started");
    match xiuhua_core::sync::sync(&mut store, &mut transport, None) {
        Ok(r) => println!("done pushed={} pulled={}", r.pushed, r.pulled),
        Err(e) => println!("failed: {e}"),
    }
    ExitCode::SUCCESS
}
