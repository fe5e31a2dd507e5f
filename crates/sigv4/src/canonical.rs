//! Canonical forms of the path and the query string.

/// Percent-encodes every byte but the RFC 3986 unreserved ones (and `/` when
/// `keep_slash`), with upper-case hex.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &byte in input {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') || (keep_slash && byte == b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`).
pub fn decode(input: &str) -> String {
    percent_encoding::percent_decode_str(input).decode_utf8_lossy().into_owned()
}

fn decode_bytes(input: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(input).collect()
}

/// The canonical URI of a non-S3 request: dot segments and empty segments removed
/// (a trailing slash kept), then every byte encoded again.
pub fn canonical_uri(raw_path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in raw_path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut path = format!("/{}", segments.join("/"));
    if raw_path.ends_with('/') && path != "/" {
        path.push('/');
    }
    uri_encode(path.as_bytes(), true)
}

/// The canonical query string: each name and value decoded, strictly encoded,
/// sorted by name and then value.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (uri_encode(&decode_bytes(key), false), uri_encode(&decode_bytes(value), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_is_normalised_and_encoded_twice() {
        assert_eq!(canonical_uri("/things/my%3Athing"), "/things/my%253Athing");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/.."), "/");
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn query_is_sorted_and_reencoded() {
        assert_eq!(canonical_query("b=2&a=x%2Fy&a=1&flag"), "a=1&a=x%2Fy&b=2&flag=");
        assert_eq!(canonical_query("k=a%20b"), "k=a%20b");
    }
}
