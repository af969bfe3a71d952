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
            Ok(b) if b.len() >= 32 => return Ok(Secret(b)),
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

    /// Checks an access token's signature and expiry; returns (device, user).
    pub fn verify_access(&self, token: &str, now_ms: i64) -> Result<(String, String), Refusal> {
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
        Ok((device.to_string(), user.to_string()))
    }

    /// The stored form of an enrollment code (keyed hash of its digits).
    pub fn code_hash(&self, code: &str) -> Option<String> {
        let digits = normalize_code(code)?;
        Some(self.sign(format!("enroll:{digits}").as_bytes()))
    }
}

/// The digits of an enrollment code as typed (spaces and hyphens ignored); `None` when it is
/// not 8 digits.
pub fn normalize_code(code: &str) -> Option<String> {
    let digits: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// A fresh one-time enrollment code, `1234-5678`.
pub fn new_enroll_code() -> Result<String, getrandom::Error> {
    loop {
        let n = getrandom::u32()?;
        // Rejection sampling keeps the digits uniform.
        if n < 4_200_000_000 {
            let v = n % 100_000_000;
            return Ok(format!("{:04}-{:04}", v / 10_000, v % 10_000));
        }
    }
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

fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
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
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
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
        let t = s.access_token("d01", "u.wang", 2_000);
        assert_eq!(
            s.verify_access(&t, 1_000).ok(),
            Some(("d01".to_string(), "u.wang".to_string()))
        );
        assert!(s.verify_access(&t, 2_000).is_err());
        let forged = t.replace("u.wang", "u.li");
        assert!(s.verify_access(&forged, 1_000).is_err());
        assert!(
            Secret::from_bytes(&[8; 32])
                .verify_access(&t, 1_000)
                .is_err()
        );
        for junk in ["", ".", "a.b.c.d", "a.b.1.zz", "日本.語.1.00"] {
            assert!(s.verify_access(junk, 0).is_err(), "{junk}");
        }
    }

    #[test]
    fn codes() {
        let c = new_enroll_code().expect("random");
        assert_eq!(c.len(), 9);
        assert!(normalize_code(&c).is_some());
        assert_eq!(normalize_code(" 1234 5678 ").as_deref(), Some("12345678"));
        assert!(normalize_code("1234567").is_none());
        let s = Secret::from_bytes(&[1; 32]);
        assert_eq!(s.code_hash("1234-5678"), s.code_hash("12345678"));
        assert_eq!(unhex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
    }
}
