//! Verification of AWS Signature Version 4, as AWS services check it.
//!
//! Pure: the caller supplies the request as it arrived on the wire (raw path and
//! query, header list, the body's SHA-256), the current time and a way to look up
//! secret keys. Both forms are accepted: the `Authorization` header and presigned
//! query parameters (`X-Amz-Signature`, used by MQTT over WebSocket).
//!
//! Canonicalisation follows the non-S3 rules: the path is normalised and encoded
//! a second time, the query is decoded, re-encoded and sorted, signed headers are
//! trimmed and joined.

mod canonical;
mod time;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use canonical::{canonical_query, canonical_uri, decode as percent_decode, uri_encode};
pub use time::{format_amz_date, parse_amz_date};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's timestamp may be from the server's clock.
pub const MAX_CLOCK_SKEW_SECS: i64 = 5 * 60;
/// The longest `X-Amz-Expires` AWS accepts (7 days).
pub const MAX_PRESIGN_EXPIRES_SECS: i64 = 7 * 24 * 3600;
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path exactly as sent, still percent-encoded.
    pub path: &'a str,
    /// The query string exactly as sent, without `?`.
    pub query: &'a str,
    /// Every header line, in the order received (repeated names allowed).
    pub headers: Vec<(&'a str, &'a str)>,
    /// Lower-case hex SHA-256 of the body.
    pub body_sha256: String,
}

/// Who signed a verified request, and for which region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub access_key: String,
    pub region: String,
    pub service: String,
    /// The `X-Amz-Security-Token` sent with the request, if any.
    pub session_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither an Authorization header nor presigned query parameters.
    #[error("Missing Authentication Token")]
    Missing,
    /// A signature that cannot be read (missing parts, bad algorithm, bad dates).
    #[error("{0}")]
    Malformed(String),
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    #[error("{0}")]
    Expired(String),
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
}

/// The parts of a signature, wherever they were carried.
struct Claim {
    access_key: String,
    scope_date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    /// Presigned requests: the validity in seconds.
    expires: Option<i64>,
}

fn header<'a>(request: &Request<'a>, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
}

/// The pairs of a query string (or a form body), `+` and percent escapes decoded.
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    let decode = |part: &str| canonical::decode(&part.replace('+', " "));
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (canonical::decode(key) == name).then(|| canonical::decode(value))
    })
}

fn parse_credential(credential: &str) -> Result<(String, String, String, String), Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, date, region, service, "aws4_request"] => {
            Ok((key.to_string(), date.to_string(), region.to_string(), service.to_string()))
        }
        _ => Err(Error::Malformed(format!(
            "Credential should be scoped to a valid region, not '{credential}'. Credential should have the form <key>/<date>/<region>/<service>/aws4_request."
        ))),
    }
}

fn parse_authorization(value: &str, request: &Request) -> Result<Claim, Error> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| Error::Malformed(format!("Unsupported signing algorithm in Authorization header: {value}")))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let missing = |what: &str| {
        Error::Malformed(format!("Authorization header requires '{what}' parameter. Authorization={value}"))
    };
    let (access_key, scope_date, region, service) = parse_credential(credential.ok_or_else(|| missing("Credential"))?)?;
    let amz_date = header(request, "x-amz-date").ok_or_else(|| {
        Error::Malformed("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into())
    })?;
    Ok(Claim {
        access_key,
        scope_date,
        region,
        service,
        signed_headers: signed_headers
            .ok_or_else(|| missing("SignedHeaders"))?
            .split(';')
            .map(str::to_string)
            .collect(),
        signature: signature.ok_or_else(|| missing("Signature"))?.to_string(),
        amz_date: amz_date.trim().to_string(),
        expires: None,
    })
}

fn parse_presigned(query: &str) -> Result<Claim, Error> {
    let get = |name: &str| {
        query_param(query, name).ok_or_else(|| {
            Error::Malformed(format!(
                "AWS query-string parameters must include '{name}'. Re-examine the query-string parameters."
            ))
        })
    };
    let algorithm = get("X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(Error::Malformed(format!("Unsupported X-Amz-Algorithm: {algorithm}")));
    }
    let (access_key, scope_date, region, service) = parse_credential(&get("X-Amz-Credential")?)?;
    // Optional: AWS IoT's WebSocket signers often leave it out; then the URL is
    // valid within the clock-skew window, like a signed header.
    let expires = query_param(query, "X-Amz-Expires")
        .map(|value| {
            value
                .parse::<i64>()
                .ok()
                .filter(|e| (0..=MAX_PRESIGN_EXPIRES_SECS).contains(e))
                .ok_or_else(|| Error::Malformed("X-Amz-Expires must be an integer from 0 to 604800".into()))
        })
        .transpose()?;
    Ok(Claim {
        access_key,
        scope_date,
        region,
        service,
        signed_headers: get("X-Amz-SignedHeaders")?.split(';').map(str::to_string).collect(),
        signature: get("X-Amz-Signature")?,
        amz_date: get("X-Amz-Date")?,
        expires,
    })
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The signing key for one day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

fn canonical_headers(request: &Request, signed: &[String]) -> String {
    signed
        .iter()
        .map(|name| {
            let values: Vec<String> = request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            format!("{name}:{}\n", values.join(","))
        })
        .collect()
}

/// The canonical request for `request` with the given signed headers and query.
pub fn canonical_request(request: &Request, signed_headers: &[String], query: &str, payload_hash: &str) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(query),
        canonical_headers(request, signed_headers),
        signed_headers.join(";"),
        payload_hash
    )
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The query a presigned signature covers: everything but the signature itself,
/// and optionally without a session token that was appended after signing.
fn presigned_query(query: &str, drop_token: bool) -> String {
    query
        .split('&')
        .filter(|pair| {
            let key = canonical::decode(pair.split_once('=').map_or(*pair, |(k, _)| k));
            key != "X-Amz-Signature" && !(drop_token && key == "X-Amz-Security-Token")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Verifies `request` at `now` (Unix seconds). `secret_for` answers the secret
/// key of an access key, or `None` for an unknown one.
pub fn verify(request: &Request, now: i64, secret_for: impl Fn(&str) -> Option<String>) -> Result<Signer, Error> {
    let presigned = query_param(request.query, "X-Amz-Signature").is_some();
    let claim = match (header(request, "authorization"), presigned) {
        (Some(value), _) => parse_authorization(value, request)?,
        (None, true) => parse_presigned(request.query)?,
        (None, false) => return Err(Error::Missing),
    };
    let signed_at = parse_amz_date(&claim.amz_date).ok_or_else(|| {
        Error::Malformed(format!("Date must be in ISO-8601 'basic format'. Got '{}'.", claim.amz_date))
    })?;
    if !claim.amz_date.starts_with(&claim.scope_date) {
        return Err(Error::Malformed(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            claim.scope_date,
            &claim.amz_date[..8.min(claim.amz_date.len())]
        )));
    }
    if !claim.signed_headers.iter().any(|h| h == "host") {
        return Err(Error::Malformed(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    match claim.expires {
        Some(expires) if now > signed_at + expires => {
            return Err(Error::Expired(format!(
                "Signature expired: {} is now earlier than {} ({} + {expires} sec.)",
                claim.amz_date,
                format_amz_date(now),
                claim.amz_date,
            )));
        }
        Some(_) if signed_at > now + MAX_CLOCK_SKEW_SECS => {
            return Err(Error::Expired(format!(
                "Signature not yet current: {} is still later than {}",
                claim.amz_date,
                format_amz_date(now + MAX_CLOCK_SKEW_SECS)
            )));
        }
        None if (now - signed_at).abs() > MAX_CLOCK_SKEW_SECS => {
            return Err(Error::Expired(format!(
                "Signature expired: {} is now earlier than {} ({} - 5 min.)",
                claim.amz_date,
                format_amz_date(now - MAX_CLOCK_SKEW_SECS),
                format_amz_date(now),
            )));
        }
        _ => {}
    }
    let secret = secret_for(&claim.access_key).ok_or(Error::UnknownAccessKey)?;
    // UNSIGNED-PAYLOAD counts only when the header carrying it is itself signed.
    let content_hash_signed = claim.signed_headers.iter().any(|h| h == "x-amz-content-sha256");
    let payload_hash = match (presigned, header(request, "x-amz-content-sha256")) {
        (false, Some(UNSIGNED_PAYLOAD)) if content_hash_signed => UNSIGNED_PAYLOAD.to_string(),
        _ => request.body_sha256.clone(),
    };
    let scope = format!("{}/{}/{}/aws4_request", claim.scope_date, claim.region, claim.service);
    let key = signing_key(&secret, &claim.scope_date, &claim.region, &claim.service);
    let signature_over = |query: &str| {
        let canonical = canonical_request(request, &claim.signed_headers, query, &payload_hash);
        hex::encode(hmac(&key, string_to_sign(&claim.amz_date, &scope, &canonical).as_bytes()))
    };
    let matches = |expected: String| bool::from(expected.as_bytes().ct_eq(claim.signature.as_bytes()));
    let verified = if presigned && header(request, "authorization").is_none() {
        // Some IoT device SDKs append the session token after signing the URL.
        matches(signature_over(&presigned_query(request.query, false)))
            || matches(signature_over(&presigned_query(request.query, true)))
    } else {
        matches(signature_over(request.query))
    };
    if !verified {
        return Err(Error::Mismatch);
    }
    let session_token = header(request, "x-amz-security-token")
        .map(str::to_string)
        .or_else(|| query_param(request.query, "X-Amz-Security-Token"));
    Ok(Signer { access_key: claim.access_key, region: claim.region, service: claim.service, session_token })
}

/// Lower-case hex SHA-256, for callers hashing bodies.
pub fn body_sha256(body: &[u8]) -> String {
    sha256_hex(body)
}

/// What a client needs to sign a request.
#[derive(Debug, Clone)]
pub struct SigningKey<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// Signs `request` (which must carry a `host` header) at `now`: returns the
/// `x-amz-date` and `authorization` headers to add. Every header given is signed.
pub fn sign(request: &Request, key: &SigningKey, now: i64) -> [(&'static str, String); 2] {
    let amz_date = format_amz_date(now);
    let date = &amz_date[..8];
    let mut headers = request.headers.clone();
    headers.push(("x-amz-date", &amz_date));
    let mut signed: Vec<String> = headers.iter().map(|(name, _)| name.to_ascii_lowercase()).collect();
    signed.sort();
    signed.dedup();
    let with_date = Request { headers, ..request.clone() };
    let scope = format!("{date}/{}/{}/aws4_request", key.region, key.service);
    let canonical = canonical_request(&with_date, &signed, request.query, &request.body_sha256);
    let signing_key = signing_key(key.secret_key, date, key.region, key.service);
    let signature = hex::encode(hmac(&signing_key, string_to_sign(&amz_date, &scope, &canonical).as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        key.access_key,
        signed.join(";")
    );
    [("x-amz-date", amz_date), ("authorization", authorization)]
}

#[cfg(test)]
mod form_tests {
    #[test]
    fn form_pairs_are_decoded() {
        assert_eq!(
            super::form_pairs("qos=1&responseTopic=a%2Fb&retain&x=a+b"),
            vec![
                ("qos".into(), "1".into()),
                ("responseTopic".into(), "a/b".into()),
                ("retain".into(), String::new()),
                ("x".into(), "a b".into())
            ]
        );
    }
}
