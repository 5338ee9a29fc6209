//! Reading a request's target and credentials: the microVM from the Host
//! header, the token and port from `X-aws-proxy-*` headers or, for
//! WebSockets, from `lambda-microvms.*` subprotocols; and removing all of
//! them before the app sees the request.

use hyper::header::{HeaderMap, HeaderValue, HOST, SEC_WEBSOCKET_PROTOCOL};

/// The header that carries the token.
pub const AUTH_HEADER: &str = "x-aws-proxy-auth";

/// The header that names the guest port.
pub const PORT_HEADER: &str = "x-aws-proxy-port";

/// The header that asks for HTTP/2 (cleartext) to the app.
pub const FORCE_H2_HEADER: &str = "x-aws-proxy-force-h2";

/// The prefix of every proxy header.
const PROXY_PREFIX: &str = "x-aws-proxy-";

/// The subprotocol a client offers to speak through the proxy.
pub const SUBPROTOCOL: &str = "lambda-microvms";

/// The subprotocol prefix that carries the token.
const AUTH_SUBPROTOCOL: &str = "lambda-microvms.authentication.";

/// The subprotocol prefix that names the port.
const PORT_SUBPROTOCOL: &str = "lambda-microvms.port.";

/// The port when a request names none.
pub const DEFAULT_PORT: u16 = 8080;

/// What a request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The token, if any.
    pub token: Option<String>,
    /// The port, if named.
    pub port: Option<String>,
    /// Whether the client offered the `lambda-microvms` subprotocol.
    pub offered_subprotocol: bool,
    /// Whether HTTP/2 to the app was asked for.
    pub force_h2: bool,
}

/// The microVM id a Host value names under `domain`:
/// `<microvm-id>.<domain>[:port]`.
pub fn microvm_of_host<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let (id, rest) = name.split_once('.')?;
    let valid = id.starts_with("microvm-")
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (valid && rest.eq_ignore_ascii_case(domain)).then_some(id)
}

/// The Host a request names: its Host header, else its URI's authority
/// (HTTP/2).
pub fn host_of(headers: &HeaderMap, uri: &hyper::Uri) -> Option<String> {
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
}

/// Takes the credentials out of `headers`: every `x-aws-proxy-*` header
/// goes, and so do the `lambda-microvms*` subprotocols (the header itself
/// goes when nothing else is left in it).
pub fn take_credentials(headers: &mut HeaderMap) -> Credentials {
    let mut found = Credentials {
        token: header_text(headers, AUTH_HEADER),
        port: header_text(headers, PORT_HEADER),
        force_h2: header_text(headers, FORCE_H2_HEADER)
            .is_some_and(|v| !v.eq_ignore_ascii_case("false") && v != "0"),
        offered_subprotocol: false,
    };
    let proxy: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(PROXY_PREFIX))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }

    let offered: Vec<String> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return found;
    }
    let mut kept = Vec::new();
    for protocol in offered {
        if let Some(token) = protocol.strip_prefix(AUTH_SUBPROTOCOL) {
            found.token.get_or_insert_with(|| token.to_owned());
        } else if let Some(port) = protocol.strip_prefix(PORT_SUBPROTOCOL) {
            found.port.get_or_insert_with(|| port.to_owned());
        } else if protocol == SUBPROTOCOL {
            found.offered_subprotocol = true;
        } else {
            kept.push(protocol);
        }
    }
    headers.remove(SEC_WEBSOCKET_PROTOCOL);
    if !kept.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&kept.join(", ")) {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
    found
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// Whether a connector list (ARNs or bare names) holds `name`.
pub fn has_connector(connectors: &[String], name: &str) -> bool {
    connectors
        .iter()
        .any(|c| c.rsplit([':', '/']).next() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "microvm-0123456789abcdef0123456789abcdef";

    #[test]
    fn hosts_name_a_microvm_under_the_endpoint_domain() {
        let host = format!("{ID}.localhost:7080");
        assert_eq!(microvm_of_host(&host, "localhost"), Some(ID));
        assert_eq!(
            microvm_of_host(&format!("{ID}.example.test"), "example.test"),
            Some(ID)
        );
        assert_eq!(
            microvm_of_host(&format!("{ID}.other:7080"), "localhost"),
            None
        );
        assert_eq!(microvm_of_host("localhost:7080", "localhost"), None);
        assert_eq!(microvm_of_host("evil.localhost", "localhost"), None);
    }

    #[test]
    fn proxy_headers_are_taken_out_of_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert("X-aws-proxy-auth", HeaderValue::from_static("tok"));
        headers.insert("x-aws-proxy-port", HeaderValue::from_static("9000"));
        headers.insert("x-aws-proxy-anything", HeaderValue::from_static("1"));
        headers.insert("x-other", HeaderValue::from_static("kept"));
        let got = take_credentials(&mut headers);
        assert_eq!(got.token.as_deref(), Some("tok"));
        assert_eq!(got.port.as_deref(), Some("9000"));
        assert!(!got.force_h2);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-other"], "kept");
    }

    #[test]
    fn websocket_subprotocols_carry_credentials_and_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(
                "lambda-microvms, lambda-microvms.authentication.abc.def, chat, lambda-microvms.port.7000",
            ),
        );
        let got = take_credentials(&mut headers);
        assert_eq!(got.token.as_deref(), Some("abc.def"));
        assert_eq!(got.port.as_deref(), Some("7000"));
        assert!(got.offered_subprotocol);
        assert_eq!(headers[SEC_WEBSOCKET_PROTOCOL], "chat");

        let mut only_ours = HeaderMap::new();
        only_ours.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("lambda-microvms"),
        );
        take_credentials(&mut only_ours);
        assert!(only_ours.get(SEC_WEBSOCKET_PROTOCOL).is_none());
    }

    #[test]
    fn connectors_match_by_arn_or_name() {
        let arn = "arn:aws:lambda:us-east-1:aws:network-connector:SHELL_INGRESS".to_owned();
        assert!(has_connector(std::slice::from_ref(&arn), "SHELL_INGRESS"));
        assert!(!has_connector(&[arn], "ALL_INGRESS"));
        assert!(has_connector(&["ALL_INGRESS".to_owned()], "ALL_INGRESS"));
    }
}
