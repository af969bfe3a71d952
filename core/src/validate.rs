//! Validation and normalisation of residents' personal data.
//!
//! Every function takes the name of the field being checked so that a refusal
//! ([`Error::Invalid`]) tells the person exactly which input to correct.

use crate::error::{Error, Result};

const MOBILE_REASON: &str = "expected an 11-digit mainland mobile number starting with 1[3-9]";

/// Validates a mainland China mobile number and returns its 11 digits.
///
/// Spaces (any whitespace) and hyphens are ignored, and a leading country code
/// `+86`, `0086` or `86` is removed, so `+86 138-0013-8000` becomes `13800138000`.
pub fn mobile(field: &str, s: &str) -> Result<String> {
    let compact: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if compact.is_empty() {
        return Err(Error::invalid(field, format!("is empty; {MOBILE_REASON}")));
    }
    let number = if let Some(rest) = compact.strip_prefix("+86") {
        rest
    } else if let Some(rest) = compact.strip_prefix("0086") {
        rest
    } else if compact.len() == 13 {
        // A bare `86` is only a country code when 11 digits follow it.
        compact.strip_prefix("86").unwrap_or(&compact)
    } else {
        &compact
    };
    let b = number.as_bytes();
    let ok = b.len() == 11
        && b.iter().all(u8::is_ascii_digit)
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1]);
    if ok {
        Ok(number.to_owned())
    } else {
        Err(Error::invalid(field, MOBILE_REASON))
    }
}

/// Weights of the first 17 digits of a resident ID (GB 11643-1999).
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character indexed by the weighted sum modulo 11.
const ID_CHECK_CHARS: &[u8; 11] = b"10X98765432";

/// The check character for the first 17 digits of an ID (which must be ASCII digits).
fn id_check_char(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    ID_CHECK_CHARS[(sum % 11) as usize]
}

fn is_leap_year(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Parses ASCII digits (already checked) into a number.
fn digits_value(d: &[u8]) -> u32 {
    d.iter().fold(0, |acc, c| acc * 10 + u32::from(c - b'0'))
}

/// Validates an 18-character resident identity number (GB 11643-1999) and returns it
/// with a trailing `x` uppercased.
///
/// Checks the format (17 digits, then a digit or `X`), the birth date (characters 7–14,
/// `YYYYMMDD`, a real calendar date with a year in 1900..=2100) and the check character.
/// Surrounding whitespace is ignored. Old 15-digit IDs are refused.
pub fn id_number(field: &str, s: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::invalid(
            field,
            "is empty; expected an 18-character resident ID number",
        ));
    }
    let b = s.as_bytes();
    if b.len() == 15 && b.iter().all(u8::is_ascii_digit) {
        return Err(Error::invalid(
            field,
            "15-digit IDs are no longer accepted; enter the 18-digit ID number (17 digits and a check digit 0-9 or X)",
        ));
    }
    let format_ok = b.len() == 18
        && b[..17].iter().all(u8::is_ascii_digit)
        && (b[17].is_ascii_digit() || b[17] == b'X' || b[17] == b'x');
    if !format_ok {
        return Err(Error::invalid(
            field,
            "expected 18 characters: 17 digits followed by a check digit 0-9 or X",
        ));
    }
    let year = digits_value(&b[6..10]);
    let month = digits_value(&b[10..12]);
    let day = digits_value(&b[12..14]);
    if !(1900..=2100).contains(&year) {
        return Err(Error::invalid(
            field,
            "birth year (characters 7-10) must be between 1900 and 2100",
        ));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(Error::invalid(
            field,
            "birth date (characters 7-14, YYYYMMDD) is not a real calendar date",
        ));
    }
    let check = b[17].to_ascii_uppercase();
    if id_check_char(&b[..17]) != check {
        return Err(Error::invalid(
            field,
            "check digit (last character) does not match; re-check the number for typos",
        ));
    }
    let mut out = s[..17].to_owned();
    out.push(char::from(check));
    Ok(out)
}

/// Masks an identity number for display: the first 3 and last 4 characters stay,
/// everything between becomes `*`, keeping the character count.
///
/// `110101199003071234` → `110***********1234`. Inputs shorter than 8 characters are
/// masked completely. Counts characters, not bytes, and never panics.
pub fn mask_id(id: &str) -> String {
    let n = id.chars().count();
    if n < 8 {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(n);
    out.extend(id.chars().take(3));
    out.extend(std::iter::repeat_n('*', n - 7));
    out.extend(id.chars().skip(n - 4));
    out
}

/// Masks a phone number for lists and the station's console: the first 3 and last 4
/// characters stay, everything between becomes `*` (`13812345678` → `138****5678`). Inputs
/// shorter than 8 characters are masked completely. Counts characters; never panics.
pub fn mask_phone(phone: &str) -> String {
    mask_id(phone)
}

/// Maximum length of a person's name, in characters.
const NAME_MAX_CHARS: usize = 32;

/// Validates a person's name: trimmed, not empty, at most 32 characters and free of
/// control characters. Returns the trimmed name.
pub fn name(field: &str, s: &str) -> Result<String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if t.chars().count() > NAME_MAX_CHARS {
        return Err(Error::invalid(
            field,
            format!("is too long; use at most {NAME_MAX_CHARS} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            "must not contain control characters such as line breaks or tabs",
        ));
    }
    Ok(t.to_owned())
}

/// Validates free text that must be present: trimmed, not empty and at most
/// `max_chars` characters. Returns the trimmed text.
pub fn non_empty(field: &str, s: &str, max_chars: usize) -> Result<String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max_chars {
        return Err(Error::invalid(
            field,
            format!("is too long; use at most {max_chars} characters"),
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent implementation of the GB 11643-1999 check character, for building
    /// test IDs.
    fn with_check(body17: &str) -> String {
        assert_eq!(body17.len(), 17);
        let w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        let sum: u32 = body17
            .chars()
            .zip(w)
            .map(|(c, w)| c.to_digit(10).unwrap_or_else(|| panic!("digit")) * w)
            .sum();
        let check = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'][(sum % 11) as usize];
        format!("{body17}{check}")
    }

    fn reason(r: Result<String>) -> (String, String) {
        match r {
            Err(Error::Invalid { field, reason }) => (field, reason),
            other => panic!("expected Error::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn known_valid_ids() {
        // Check characters verified by hand with the weights and table.
        assert_eq!(
            id_number("id", "11010519491231002X").ok().as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(
            id_number("id", "11010519491231002x").ok().as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(
            id_number("id", "320106198511240036").ok().as_deref(),
            Some("320106198511240036")
        );
        assert_eq!(
            id_number("id", " 320106198511240036 ").ok().as_deref(),
            Some("320106198511240036")
        );
    }

    #[test]
    fn computed_valid_ids() {
        for body in [
            "11010119900307123",
            "44030420000229001", // leap day in a leap century year
            "51010720240229123", // leap day
            "65010219000101000", // lower year bound
            "11010121001231999", // upper year bound
            "11010519491231002",
        ] {
            let id = with_check(body);
            assert_eq!(id_number("id", &id).ok(), Some(id.clone()), "{id}");
        }
        assert_eq!(with_check("11010519491231002"), "11010519491231002X");
    }

    #[test]
    fn wrong_check_digit() {
        let id = with_check("11010119900307123");
        let last = id.as_bytes()[17];
        let wrong = if last == b'0' { '1' } else { '0' };
        let bad = format!("{}{wrong}", &id[..17]);
        let (field, reason) = reason(id_number("id_no", &bad));
        assert_eq!(field, "id_no");
        assert!(reason.contains("check digit"), "{reason}");
        assert!(id_number("id", "110105194912310021").is_err());
    }

    #[test]
    fn bad_dates() {
        for body in [
            "11010120230230001", // Feb 30
            "11010120230229001", // Feb 29 in a non-leap year
            "11010119000229001", // 1900 is not a leap year
            "11010120231301001", // month 13
            "11010120230000001", // month 0
            "11010120230100001", // day 0
            "11010120230431001", // April 31
        ] {
            let (_, reason) = reason(id_number("id", &with_check(body)));
            assert!(reason.contains("calendar date"), "{body}: {reason}");
        }
        // Valid check digit, year out of range.
        for id in ["440524188001010014", &with_check("11010121010101001")] {
            let (_, reason) = reason(id_number("id", id));
            assert!(reason.contains("1900"), "{id}: {reason}");
        }
    }

    #[test]
    fn old_and_malformed_ids() {
        let (field, reason) = reason(id_number("id", "110105491231002"));
        assert_eq!(field, "id");
        assert!(reason.contains("18"), "{reason}");
        for bad in [
            "",
            "   ",
            "1101051949123100",
            "1101051949123100211",
            "X10105194912310021",
            "1101051949123100Y2",
            "11010519491231002Y",
            "１１０１０５１９４９１２３１００２Ｘ", // full-width digits
            "11010519491231002X\u{0}",
        ] {
            assert!(id_number("id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mobile_variants() {
        for ok in [
            "13800138000",
            "138 0013 8000",
            "138-0013-8000",
            "+8613800138000",
            "+86 138 0013 8000",
            "+86-138-0013-8000",
            "8613800138000",
            "86 13800138000",
            "008613800138000",
            "0086 138-0013-8000",
            " 13800138000 ",
        ] {
            assert_eq!(
                mobile("phone", ok).ok().as_deref(),
                Some("13800138000"),
                "{ok:?}"
            );
        }
        assert_eq!(
            mobile("phone", "19912345678").ok().as_deref(),
            Some("19912345678")
        );
    }

    #[test]
    fn mobile_refusals() {
        for bad in [
            "",
            "   ",
            "12800138000",  // second digit 2
            "10800138000",  // second digit 0
            "23800138000",  // does not start with 1
            "1380013800",   // 10 digits
            "138001380001", // 12 digits
            "+8513800138000",
            "+86",
            "86",
            "861380013800", // 86 + 10 digits: not a country code, and 12 digits
            "1380013800a",
            "138.0013.8000",
            "(+86)13800138000",
            "０１３８００１３８０００",
            "+1 13800138000",
        ] {
            let (field, reason) = reason(mobile("phone", bad));
            assert_eq!(field, "phone");
            assert!(reason.contains("11-digit"), "{bad:?}: {reason}");
        }
    }

    #[test]
    fn masking() {
        assert_eq!(mask_id("110101199003071234"), "110***********1234");
        assert_eq!(mask_id("11010519491231002X"), "110***********002X");
        assert_eq!(mask_id(""), "");
        assert_eq!(mask_id("1234567"), "*******");
        assert_eq!(mask_id("12345678"), "123*5678");
        assert_eq!(mask_id("张三李四"), "****");
        assert_eq!(mask_id("一二三四五六七八九"), "一二三**六七八九");
        assert_eq!(mask_id("😀😀😀x😀😀😀😀"), "😀😀😀*😀😀😀😀");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("1381234"), "*******");
        for s in [
            "",
            "a",
            "é",
            "ab\u{301}cdefgh",
            "身份证号码一二三四五六",
            "\u{0}\u{0}",
        ] {
            let m = mask_id(s);
            assert_eq!(m.chars().count(), s.chars().count(), "{s:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(name("name", "  张三 ").ok().as_deref(), Some("张三"));
        assert_eq!(
            name("name", "阿卜杜·买买提").ok().as_deref(),
            Some("阿卜杜·买买提")
        );
        let (field, _) = reason(name("name", "   "));
        assert_eq!(field, "name");
        assert!(name("name", "").is_err());
        assert!(name("name", "张\n三").is_err());
        assert!(name("name", "张\u{7}三").is_err());
        let long32: String = "字".repeat(32);
        assert_eq!(name("name", &long32).ok(), Some(long32.clone()));
        assert!(name("name", &"字".repeat(33)).is_err());
    }

    #[test]
    fn non_empty_text() {
        assert_eq!(
            non_empty("addr", " 1号楼 ", 10).ok().as_deref(),
            Some("1号楼")
        );
        assert!(non_empty("addr", " \t ", 10).is_err());
        assert_eq!(
            non_empty("addr", "一二三", 3).ok().as_deref(),
            Some("一二三")
        );
        let (field, reason) = reason(non_empty("addr", "一二三四", 3));
        assert_eq!(field, "addr");
        assert!(reason.contains('3'), "{reason}");
    }
}
