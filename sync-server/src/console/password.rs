//! Console passwords: argon2id (the `argon2` crate's defaults: m = 19 MiB, t = 2, p = 1,
//! version 0x13) stored as PHC strings, each with its own 16-byte random salt.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password `set-password` accepts, in characters.
pub const MIN_CHARS: usize = 10;
/// Longest password accepted (bytes), so that hashing a login stays bounded.
pub const MAX_BYTES: usize = 1024;

/// Whether a new password is acceptable; the reason when not.
pub fn check_new(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_CHARS {
        return Err(format!("a password has at least {MIN_CHARS} characters"));
    }
    if password.len() > MAX_BYTES {
        return Err(format!("a password has at most {MAX_BYTES} bytes"));
    }
    if password.chars().any(char::is_control) {
        return Err("a password has no control characters".into());
    }
    Ok(())
}

/// The argon2id PHC string of a password.
pub fn hash(password: &str) -> Result<String, String> {
    let salt_bytes = crate::auth::random_bytes::<16>().map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string (false for a malformed one, or an over-long
/// password).
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_BYTES {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash no password matches, verified against when the user is unknown or has no
/// password, so that the answer takes as long as for a known user.
pub fn dummy() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = crate::auth::random_bytes::<24>()
            .map(|b| crate::auth::hex(&b))
            .unwrap_or_else(|_| "unguessable-dummy-password".into());
        hash(&random).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterx", &a));
        assert!(!verify("anything", "not a phc string"));
        assert!(!verify("anything", dummy()));
        assert!(check_new("short").is_err());
        assert!(check_new("long enough pw").is_ok());
        assert!(check_new("with\nnewline!!").is_err());
    }
}
