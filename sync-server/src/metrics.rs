//! Counters exposed at `GET /metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    pub changes_stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub writes_refused: AtomicU64,
    pub pulls: AtomicU64,
    pub pulled_changes: AtomicU64,
    pub bootstraps: AtomicU64,
    pub enrollments: AtomicU64,
    pub escalations: AtomicU64,
    pub repairs: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connections_refused: AtomicU64,
    pub enroll_throttled: AtomicU64,
    pub long_polls_refused: AtomicU64,
}

impl Metrics {
    /// Counts one request.
    pub fn request(&self, route: &str, status: u16, bytes_in: u64, bytes_out: u64) {
        let mut m = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *m.entry((route.to_string(), status)).or_default() += 1;
        drop(m);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP xiuhua_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE xiuhua_http_requests_total counter\n");
        let m = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((route, status), n) in m.iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "xiuhua_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        drop(m);
        let counters: [(&str, &str, &AtomicU64); 14] = [
            (
                "xiuhua_changes_stored_total",
                "Changes stored by pushes.",
                &self.changes_stored,
            ),
            (
                "xiuhua_changes_duplicate_total",
                "Pushed changes the server already had.",
                &self.duplicates,
            ),
            (
                "xiuhua_writes_refused_total",
                "Pushes refused (nothing stored).",
                &self.writes_refused,
            ),
            ("xiuhua_pulls_total", "Pull requests answered.", &self.pulls),
            (
                "xiuhua_pulled_changes_total",
                "Changes sent by pulls.",
                &self.pulled_changes,
            ),
            (
                "xiuhua_bootstraps_total",
                "Bootstrap bundles sent.",
                &self.bootstraps,
            ),
            (
                "xiuhua_enrollments_total",
                "Devices enrolled.",
                &self.enrollments,
            ),
            (
                "xiuhua_escalations_total",
                "Tasks escalated.",
                &self.escalations,
            ),
            (
                "xiuhua_repairs_total",
                "Repair rounds answered.",
                &self.repairs,
            ),
            (
                "xiuhua_http_request_bytes_total",
                "Request body bytes received.",
                &self.bytes_in,
            ),
            (
                "xiuhua_http_response_bytes_total",
                "Response body bytes sent.",
                &self.bytes_out,
            ),
            (
                "xiuhua_connections_refused_total",
                "Connections closed at once: the connection caps were reached.",
                &self.connections_refused,
            ),
            (
                "xiuhua_enroll_throttled_total",
                "Enrollment attempts answered 429.",
                &self.enroll_throttled,
            ),
            (
                "xiuhua_long_polls_refused_total",
                "Long polls answered 429: the device had too many open.",
                &self.long_polls_refused,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// The gauge of quarantined documents (read from the storage at each scrape).
pub fn quarantined_gauge(n: usize) -> String {
    format!(
        "# HELP xiuhua_quarantined_documents Stored documents set aside by `xiuhua-server check` or a push (their stored state does not load).\n# TYPE xiuhua_quarantined_documents gauge\nxiuhua_quarantined_documents {n}\n"
    )
}
