//! The AWS SigV4 test suite and requests signed by botocore must verify; any
//! tampering must not.

use ferrocore_sigv4::{Error, Request, body_sha256, canonical_request, parse_amz_date, verify};
use serde::Deserialize;

#[derive(Deserialize)]
struct SuiteVector {
    name: String,
    signed_request: String,
    canonical_request: String,
}

#[derive(Deserialize)]
struct BotocoreVector {
    name: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: String,
    access_key: String,
    secret_key: String,
    canonical_request: String,
    presigned: bool,
}

/// An owned request parsed from raw HTTP text (folded header lines joined with a space).
struct Owned {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Owned {
    fn parse(text: &str) -> Self {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let request_line = lines.next().unwrap();
        let (method, rest) = request_line.split_once(' ').unwrap();
        let target = rest.rsplit_once(' ').unwrap().0;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                headers.last_mut().unwrap().1.push_str(&format!(" {line}"));
            } else {
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_string(), value.to_string()));
            }
        }
        Self { method: method.into(), path: path.into(), query: query.into(), headers, body: body.into() }
    }

    fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
            body_sha256: body_sha256(self.body.as_bytes()),
        }
    }

    fn signed_headers(&self) -> Vec<String> {
        let auth = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        let list = match auth {
            Some((_, value)) => value.split("SignedHeaders=").nth(1).unwrap().split(',').next().unwrap().to_string(),
            None => {
                self.query.split('&').find_map(|p| p.strip_prefix("X-Amz-SignedHeaders=")).unwrap().replace("%3B", ";")
            }
        };
        list.split(';').map(str::to_string).collect()
    }

    fn signed_at(&self) -> i64 {
        let date = self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-date"))
            .map(|(_, v)| v.trim().to_string())
            .or_else(|| self.query.split('&').find_map(|p| p.strip_prefix("X-Amz-Date=")).map(str::to_string))
            .unwrap();
        parse_amz_date(&date).unwrap()
    }
}

fn load<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let path = format!("{}/tests/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn check(name: &str, owned: &Owned, secret_for: &dyn Fn(&str) -> Option<String>) {
    let now = owned.signed_at();
    let result = verify(&owned.request(), now, secret_for);
    assert!(result.is_ok(), "{name}: {result:?}");

    let mut tampered_body = Owned { body: format!("{}x", owned.body), ..clone(owned) };
    if owned.method == "POST" || owned.method == "PUT" || owned.method == "PATCH" || !owned.body.is_empty() {
        assert_eq!(verify(&tampered_body.request(), now, secret_for), Err(Error::Mismatch), "{name}: body");
    }
    tampered_body.body = owned.body.clone();
    let tampered_path = Owned { path: format!("{}x", owned.path), ..clone(owned) };
    assert_eq!(verify(&tampered_path.request(), now, secret_for), Err(Error::Mismatch), "{name}: path");
    let late = verify(&owned.request(), now + 7 * 24 * 3600 + 1, secret_for);
    assert!(matches!(late, Err(Error::Expired(_))), "{name}: clock skew: {late:?}");
    let nobody = |_: &str| None;
    assert_eq!(verify(&owned.request(), now, nobody), Err(Error::UnknownAccessKey), "{name}: unknown key");
}

fn clone(owned: &Owned) -> Owned {
    Owned {
        method: owned.method.clone(),
        path: owned.path.clone(),
        query: owned.query.clone(),
        headers: owned.headers.clone(),
        body: owned.body.clone(),
    }
}

#[test]
fn aws_test_suite() {
    let vectors: Vec<SuiteVector> = load("aws-suite.json");
    assert!(vectors.len() >= 30);
    let secret_for = |key: &str| (key == "AKIDEXAMPLE").then(|| SUITE_SECRET.to_string());
    for vector in &vectors {
        let owned = Owned::parse(&vector.signed_request);
        let request = owned.request();
        let canonical = canonical_request(&request, &owned.signed_headers(), &owned.query, &request.body_sha256);
        assert_eq!(canonical, vector.canonical_request, "{}", vector.name);
        check(&vector.name, &owned, &secret_for);
    }
}

#[test]
fn botocore_signed_requests() {
    let vectors: Vec<BotocoreVector> = load("botocore.json");
    assert!(vectors.len() >= 15);
    for vector in &vectors {
        let owned = Owned {
            method: vector.method.clone(),
            path: vector.path.clone(),
            query: vector.query.clone(),
            headers: vector.headers.clone(),
            body: vector.body.clone(),
        };
        if !vector.presigned {
            let request = owned.request();
            let canonical = canonical_request(&request, &owned.signed_headers(), &owned.query, &request.body_sha256);
            assert_eq!(canonical, vector.canonical_request, "{}", vector.name);
        }
        let secret = vector.secret_key.clone();
        let access_key = vector.access_key.clone();
        check(&vector.name, &owned, &move |key: &str| (key == access_key).then(|| secret.clone()));
    }
}

#[test]
fn missing_and_malformed_signatures() {
    let request = Request { method: "GET", path: "/", query: "", headers: vec![], body_sha256: body_sha256(b"") };
    assert_eq!(verify(&request, 0, |_| None), Err(Error::Missing));
    let request = Request {
        headers: vec![
            ("Authorization", "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00"),
            ("X-Amz-Date", "20150830T123600Z"),
        ],
        ..request
    };
    assert!(matches!(verify(&request, 0, |_| None), Err(Error::Malformed(_))));
}

#[test]
fn signed_requests_verify() {
    use ferrocore_sigv4::{SigningKey, sign};
    let body = br#"{"thingTypeName":"T"}"#;
    let request = Request {
        method: "POST",
        path: "/things/a%3Ab",
        query: "x=1&a=b%2Fc",
        headers: vec![("host", "127.0.0.1:4566"), ("content-type", "application/json")],
        body_sha256: body_sha256(body),
    };
    let key = SigningKey { access_key: "test", secret_key: "test", region: "us-east-1", service: "iot" };
    let now = 1_767_225_600;
    let added = sign(&request, &key, now);
    let mut headers = request.headers.clone();
    headers.extend(added.iter().map(|(n, v)| (*n, v.as_str())));
    let signed = Request { headers, ..request };
    let signer = verify(&signed, now, |k| (k == "test").then(|| "test".to_string())).unwrap();
    assert_eq!((signer.region.as_str(), signer.service.as_str()), ("us-east-1", "iot"));
    assert_eq!(verify(&signed, now, |_| Some("other".into())), Err(Error::Mismatch));
}
