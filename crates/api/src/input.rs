//! What a handler reads from a request: path labels, query parameters, headers
//! and the JSON body, each with AWS-shaped errors.

use std::collections::HashMap;
use std::str::FromStr;

use axum::body::Bytes;
use axum::http::HeaderMap;
use ferrocore_registry::PageRequest;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub(crate) struct Input {
    labels: HashMap<&'static str, String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Input {
    pub fn new(labels: HashMap<&'static str, String>, raw_query: &str, headers: HeaderMap, body: Bytes) -> Self {
        Self { labels, query: ferrocore_sigv4::form_pairs(raw_query), headers, body }
    }

    /// A path label; the operation table guarantees its presence.
    pub fn label(&self, name: &str) -> String {
        self.labels.get(name).cloned().unwrap_or_default()
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn query_as<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.query(name)
            .map(|raw| {
                raw.parse().map_err(|_| ApiError::invalid(format!("Value '{raw}' for parameter {name} is invalid.")))
            })
            .transpose()
    }

    pub fn query_flag(&self, name: &str) -> Result<bool, ApiError> {
        Ok(self.query_as::<bool>(name)?.unwrap_or(false))
    }

    /// `nextToken` and `maxResults` from the query string.
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            next_token: self.query("nextToken").map(str::to_string),
            max_results: self.query_as("maxResults")?,
        })
    }

    /// `marker` and `pageSize`, the paging of the older list operations.
    pub fn marker_page(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            next_token: self.query("marker").map(str::to_string),
            max_results: self.query_as("pageSize")?,
        })
    }

    /// A required header-bound member (e.g. `x-amzn-principal`).
    pub fn header(&self, name: &str, member: &str) -> Result<String, ApiError> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid(format!("{member} is required (header {name}).")))
    }

    /// The JSON body; an empty body reads as `{}`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let text: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &self.body };
        serde_json::from_slice(text).map_err(|err| {
            ApiError::invalid(format!("The request body could not be parsed as the expected JSON document: {err}"))
        })
    }

    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// An optional header, when it is valid text.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body, shared (a payload passed on as it is).
    pub fn bytes(&self) -> Bytes {
        self.body.clone()
    }

    /// The raw body (documents passed through as they are, like shadow updates).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as form parameters (the query protocol).
    pub fn form(&self) -> Vec<(String, String)> {
        ferrocore_sigv4::form_pairs(&String::from_utf8_lossy(&self.body))
    }
}
