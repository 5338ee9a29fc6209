//! The pieces of a Signature Version 4 signature: the canonical request, the
//! string to sign, the signing key and the `X-Amz-Date` format.
//!
//! The canonical request follows botocore byte for byte, since the official
//! clients sign that way: the path has its dot segments and empty segments
//! removed and is then percent-encoded again (so `%3A` in a label becomes
//! `%253A`), query pairs are decoded, re-encoded and sorted, and header
//! values have their runs of whitespace collapsed.

use hmac::{KeyInit, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The HMAC used throughout.
pub(crate) type HmacSha256 = hmac::Hmac<Sha256>;

/// The algorithm name in the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The last element of a credential scope.
pub const TERMINATOR: &str = "aws4_request";

/// Everything but unreserved characters (`A-Z a-z 0-9 - _ . ~`).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Like [`ENCODE`], but keeping `/`.
const ENCODE_PATH: &AsciiSet = &ENCODE.remove(b'/');

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The key that signs requests on `date` (`YYYYMMDD`) for a region and
/// service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, TERMINATOR.as_bytes())
}

/// The canonical form of a raw (still percent-encoded) request path.
pub fn canonical_path(raw_path: &str) -> String {
    utf8_percent_encode(&remove_dot_segments(raw_path), ENCODE_PATH).to_string()
}

/// RFC 3986 dot-segment removal that also drops empty segments, keeping a
/// leading and a trailing slash, as botocore does.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut output: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                output.pop();
            }
            other => output.push(other),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !output.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{first}{}{last}", output.join("/"))
}

/// The canonical form of a raw query string: pairs decoded, re-encoded and
/// sorted by key, then value.
pub fn canonical_query(raw_query: &str) -> String {
    let encode = |s: &str| {
        let decoded = percent_decode_str(s).collect::<Vec<u8>>();
        percent_encoding::percent_encode(&decoded, ENCODE).to_string()
    };
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(key), encode(value))
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value with surrounding whitespace trimmed and inner runs of
/// whitespace collapsed to one space.
pub fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request.
///
/// `headers` holds each signed header's lowercase name and its values, in
/// the order `signed_headers` lists them.
pub fn canonical_request(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(String, Vec<String>)],
    payload_hash: &str,
) -> String {
    let mut canonical_headers = String::new();
    for (name, values) in headers {
        let values: Vec<String> = values.iter().map(|v| trim_all(v)).collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let signed: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();

    [
        method.to_owned(),
        canonical_path(raw_path),
        canonical_query(raw_query),
        canonical_headers,
        signed.join(";"),
        payload_hash.to_owned(),
    ]
    .join("\n")
}

/// The string to sign for a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// Seconds since the Unix epoch for an `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
pub fn parse_amz_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit);
    if !well_formed {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text[range].parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The `X-Amz-Date` for seconds since the Unix epoch.
pub fn format_amz_date(unix_seconds: i64) -> String {
    let (year, month, day) = civil_from_days(unix_seconds.div_euclid(86_400));
    let secs = unix_seconds.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_round_trip() {
        for text in [
            "20150830T123600Z",
            "20000229T000000Z",
            "19700101T000000Z",
            "20991231T235959Z",
        ] {
            let secs = parse_amz_date(text).unwrap();
            assert_eq!(format_amz_date(secs), text);
        }
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }

    #[test]
    fn paths_are_normalized_then_encoded_again() {
        assert_eq!(canonical_path("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_path("/tags/arn%3Aaws"), "/tags/arn%253Aaws");
        assert_eq!(canonical_path(""), "/");
    }

    #[test]
    fn query_pairs_are_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=%20x&a=1"), "a=%20x&a=1&b=2");
        assert_eq!(canonical_query("k=a+b"), "k=a%2Bb");
    }

    // The `get-vanilla-query-order-key-case` case of AWS's SigV4 test suite.
    #[test]
    fn matches_the_aws_test_suite() {
        let headers = vec![
            ("host".to_owned(), vec!["example.amazonaws.com".to_owned()]),
            ("x-amz-date".to_owned(), vec!["20150830T123600Z".to_owned()]),
        ];
        let creq = canonical_request(
            "GET",
            "/",
            "Param2=value2&Param1=value1",
            &headers,
            &sha256_hex(b""),
        );
        let scope = "20150830/us-east-1/service/aws4_request";
        let sts = string_to_sign("20150830T123600Z", scope, &creq);
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "service",
        );
        assert_eq!(
            hex::encode(hmac(&key, sts.as_bytes())),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }
}
