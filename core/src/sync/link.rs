//! What an enrollment QR code holds, for the station console that draws it and the app that
//! scans it: `xiuhua://enroll?server=URL&code=CODE`, both values percent-encoded. They are
//! exactly what enrollment takes: the server's base URL (the transport's) and the one-time
//! code ([`crate::sync::enroll`]).

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The scheme and path of an enrollment link.
pub const ENROLL_LINK_PREFIX: &str = "xiuhua://enroll?";

/// The enrollment link of a server and a code.
pub fn enroll_link(server: &str, code: &str) -> String {
    format!(
        "{ENROLL_LINK_PREFIX}server={}&code={}",
        utf8_percent_encode(server, NON_ALPHANUMERIC),
        utf8_percent_encode(code, NON_ALPHANUMERIC)
    )
}

/// The server URL and code of an enrollment link; `None` unless it is one, with an
/// `http(s)://` server and a code (checked by the server at enrollment).
pub fn parse_enroll_link(link: &str) -> Option<(String, String)> {
    let query = link.trim().strip_prefix(ENROLL_LINK_PREFIX)?;
    let (mut server, mut code) = (None, None);
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=')?;
        let v = percent_decode_str(v).decode_utf8().ok()?.into_owned();
        match k {
            "server" if server.is_none() => server = Some(v),
            "code" if code.is_none() => code = Some(v),
            _ => return None,
        }
    }
    let (server, code) = (server?, code?);
    let ok_server = (server.starts_with("http://") || server.starts_with("https://"))
        && server.len() <= 2048
        && !server.chars().any(|c| c.is_control() || c.is_whitespace());
    let ok_code = !code.trim().is_empty() && code.len() <= 64;
    (ok_server && ok_code).then_some((server, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_and_refuse_anything_else() {
        let l = enroll_link("http://192.168.1.5:8640", "7K3M-Q9XD-2HPA");
        assert_eq!(
            l,
            "xiuhua://enroll?server=http%3A%2F%2F192%2E168%2E1%2E5%3A8640&code=7K3M%2DQ9XD%2D2HPA"
        );
        assert_eq!(
            parse_enroll_link(&l),
            Some(("http://192.168.1.5:8640".into(), "7K3M-Q9XD-2HPA".into()))
        );
        for bad in [
            "https://example.com",
            "xiuhua://enroll?server=ftp%3A%2F%2Fx&code=A",
            "xiuhua://enroll?server=http%3A%2F%2Fx",
            "xiuhua://enroll?server=http%3A%2F%2Fx&code=A&code=B",
            "xiuhua://enroll?server=http%3A%2F%2Fx&code=A&evil=1",
            "xiuhua://enroll?server=http%3A%2F%2Fx%20y&code=A",
            "xiuhua://enroll?server=http%3A%2F%2Fx&code=%FF",
        ] {
            assert_eq!(parse_enroll_link(bad), None, "{bad}");
        }
    }
}
