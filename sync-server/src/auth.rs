//! Credentials: the server secret, one-time enrollment codes, HMAC-SHA256 access tokens
//! (`device.user.expiry_ms.sig`) and refresh tokens (random, stored hashed).

use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::Refusal;

type HmacSha256 = Hmac<Sha256>;

/// Name of the secret's file in the data folder.
pub const SECRET_FILE: &str = "server.secret";
/// An enrollment code is valid this long.
pub const ENROLL_CODE_TTL_MS: i64 = 24 * 3600 * 1000;
/// A refresh token is valid this long (a phone may stay offline for weeks).
pub const REFRESH_TTL_MS: i64 = 180 * 24 * 3600 * 1000;

/// Clock difference between server processes tolerated on a token's expiry.
pub const CLOCK_SKEW_MS: i64 = 60_000;

/// The server's signing secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from bytes (tests).
    pub fn from_bytes(b: &[u8]) -> Secret {
        Secret(b.to_vec())
    }

    /// Reads the secret of a data folder, creating it (32 random bytes, mode 0600) if absent.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Secret> {
        let path = dir.join(SECRET_FILE);
        match std::fs::read(&path) {
            Ok(b) if b.len() >= 32 => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                }
                return Ok(Secret(b));
            }
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is shorter than 32 bytes",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let bytes = random_bytes::<32>().map_err(std::io::Error::other)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        use std::io::Write;
        let mut f = opts.open(&path)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        Ok(Secret(bytes.to_vec()))
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length: this never fails.
        #[allow(clippy::expect_used)]
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        m.update(data);
        m
    }

    fn sign(&self, data: &[u8]) -> String {
        hex(&self.mac(data).finalize().into_bytes())
    }

    /// Issues an access token.
    pub fn access_token(&self, device: &str, user: &str, expires_ms: i64) -> String {
        let payload = format!("{device}.{user}.{expires_ms}");
        let sig = self.sign(payload.as_bytes());
        format!("{payload}.{sig}")
    }

    /// Checks an access token's signature and expiry; returns (device, user). A token whose
    /// expiry lies further than `max_ttl_ms` (plus a minute of clock skew between processes)
    /// after `now_ms` is refused: no token outlives the configured lifetime, whatever it says.
    pub fn verify_access(
        &self,
        token: &str,
        now_ms: i64,
        max_ttl_ms: i64,
    ) -> Result<(String, String), Refusal> {
        let bad = || Refusal::unauthorized("malformed access token");
        let (payload, sig) = token.rsplit_once('.').ok_or_else(bad)?;
        let sig = unhex(sig).ok_or_else(bad)?;
        self.mac(payload.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| Refusal::unauthorized("access token signature does not verify"))?;
        let (rest, expiry) = payload.rsplit_once('.').ok_or_else(bad)?;
        let (device, user) = rest.split_once('.').ok_or_else(bad)?;
        let expiry: i64 = expiry.parse().map_err(|_| bad())?;
        if expiry <= now_ms {
            return Err(Refusal::unauthorized("access token expired; refresh it"));
        }
        if expiry
            > now_ms
                .saturating_add(max_ttl_ms)
                .saturating_add(CLOCK_SKEW_MS)
        {
            return Err(Refusal::unauthorized(
                "access token expiry is past the token lifetime; refresh it",
            ));
        }
        Ok((device.to_string(), user.to_string()))
    }

    /// A keyed tag of `data` for one `purpose` (the console's CSRF tokens), hex.
    pub fn tag(&self, purpose: &str, data: &str) -> String {
        self.sign(format!("tag:{purpose}:{data}").as_bytes())
    }

    /// Whether `tag` is [`Secret::tag`] of `data` for `purpose` (compared in constant time).
    pub fn check_tag(&self, purpose: &str, data: &str, tag: &str) -> bool {
        unhex(tag).is_some_and(|t| {
            self.mac(format!("tag:{purpose}:{data}").as_bytes())
                .verify_slice(&t)
                .is_ok()
        })
    }

    /// The stored form of an enrollment code (keyed hash of its normalised form).
    pub fn code_hash(&self, code: &str) -> Option<String> {
        let norm = normalize_code(code)?;
        Some(self.sign(format!("enroll:{norm}").as_bytes()))
    }
}

/// Characters of an enrollment code: Crockford's base32 (no I, L, O, U).
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a code: 12 × 5 bits = 60 bits of entropy.
pub const CODE_CHARS: usize = 12;
/// How a code is described to a person.
pub const CODE_FORMAT: &str = "12 letters and digits, e.g. 7K3M-Q9XD-2HPA";

/// An enrollment code as typed, normalised: spaces and hyphens dropped, upper case, and
/// Crockford's look-alikes read as digits (I and L as 1, O as 0); `None` unless that leaves
/// [`CODE_CHARS`] characters of the alphabet.
pub fn normalize_code(code: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_CHARS);
    for c in code.chars() {
        if c.is_whitespace() || c == '-' {
            continue;
        }
        let c = match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        };
        if !c.is_ascii() || !CODE_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        if out.len() == CODE_CHARS {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_CHARS).then_some(out)
}

/// A fresh one-time enrollment code, `7K3M-Q9XD-2HPA` (60 random bits).
pub fn new_enroll_code() -> Result<String, getrandom::Error> {
    let bytes = random_bytes::<CODE_CHARS>()?;
    let mut s = String::with_capacity(CODE_CHARS + 2);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        // 256 is a multiple of 32: the low five bits are uniform.
        s.push(char::from(CODE_ALPHABET[usize::from(b & 31)]));
    }
    Ok(s)
}

/// A fresh refresh token (32 random bytes, hex).
pub fn new_refresh_token() -> Result<String, getrandom::Error> {
    Ok(hex(&random_bytes::<32>()?))
}

/// A fresh device id, `d` + 16 hex digits (also the device's Automerge actor id).
pub fn new_device_id() -> Result<String, getrandom::Error> {
    Ok(format!("d{}", hex(&random_bytes::<8>()?)))
}

/// The stored form of a refresh token.
pub fn refresh_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)?;
    Ok(b)
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let val = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            // Lower case only: a token has one spelling.
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(val(p[0])? << 4 | val(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_expire() {
        let s = Secret::from_bytes(&[7; 32]);
        let ttl = 900_000;
        let t = s.access_token("d01", "u.wang", 2_000);
        assert_eq!(
            s.verify_access(&t, 1_000, ttl).ok(),
            Some(("d01".to_string(), "u.wang".to_string()))
        );
        assert!(s.verify_access(&t, 2_000, ttl).is_err());
        let forged = t.replace("u.wang", "u.li");
        assert!(s.verify_access(&forged, 1_000, ttl).is_err());
        assert!(
            Secret::from_bytes(&[8; 32])
                .verify_access(&t, 1_000, ttl)
                .is_err()
        );
        for junk in ["", ".", "a.b.c.d", "a.b.1.zz", "日本.語.1.00"] {
            assert!(s.verify_access(junk, 0, ttl).is_err(), "{junk}");
        }
    }

    #[test]
    fn a_token_outliving_the_ttl_is_refused() {
        let s = Secret::from_bytes(&[7; 32]);
        let ttl = 900_000;
        let now = 1_000_000;
        let within = s.access_token("d01", "u", now + ttl);
        assert!(s.verify_access(&within, now, ttl).is_ok());
        let forever = s.access_token("d01", "u", i64::MAX);
        assert!(s.verify_access(&forever, now, ttl).is_err());
        let late = s.access_token("d01", "u", now + ttl + CLOCK_SKEW_MS + 1);
        assert!(s.verify_access(&late, now, ttl).is_err());
    }

    #[test]
    fn a_token_has_one_spelling() {
        let s = Secret::from_bytes(&[7; 32]);
        let t = s.access_token("d01", "u", 2_000);
        let (payload, sig) = t.rsplit_once('.').unwrap();
        let upper = format!("{payload}.{}", sig.to_ascii_uppercase());
        assert_ne!(upper, t);
        assert!(s.verify_access(&upper, 1_000, 900_000).is_err());
    }

    #[test]
    fn codes() {
        let c = new_enroll_code().expect("random");
        assert_eq!(c.len(), 14);
        assert_eq!(c.matches('-').count(), 2);
        assert!(normalize_code(&c).is_some());
        assert_eq!(
            normalize_code(" 7k3m q9xd-2hpa ").as_deref(),
            Some("7K3MQ9XD2HPA")
        );
        // Look-alikes read as the digits they resemble.
        assert_eq!(
            normalize_code("ILO0-1111-2222").as_deref(),
            Some("110011112222")
        );
        for bad in [
            "1234-5678",
            "7K3M-Q9XD-2HP",
            "7K3M-Q9XD-2HPAA",
            "7K3M-Q9XD-2HPU",
            "７K3M-Q9XD-2HPA",
        ] {
            assert!(normalize_code(bad).is_none(), "{bad}");
        }
        let s = Secret::from_bytes(&[1; 32]);
        assert_eq!(s.code_hash("7K3M-Q9XD-2HPA"), s.code_hash("7k3mq9xd2hpa"));
        // Codes differ (60 random bits each).
        let many: std::collections::HashSet<String> =
            (0..1000).map(|_| new_enroll_code().unwrap()).collect();
        assert_eq!(many.len(), 1000);
        assert_eq!(unhex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
    }
}
