//! What the machine is and how much memory this process uses (Linux `/proc`).

use serde_json::{Value, json};

/// A `kB` field of `/proc/self/status` (`VmHWM`, `VmRSS` …), in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kb_field(&status, field)
}

fn kb_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// CPU model, core counts and total RAM, as far as `/proc` tells.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let processors = cpuinfo
        .lines()
        .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
        .count();
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    json!({
        "cpu": model,
        "cores": available,
        "processors": processors,
        "ram_bytes": kb_field(&meminfo, "MemTotal"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kb_fields() {
        let text = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(kb_field(text, "VmHWM"), Some(2048 * 1024));
        assert_eq!(kb_field(text, "VmRSS"), Some(1024 * 1024));
        assert_eq!(kb_field(text, "VmSwap"), None);
    }
}
