//! `nextToken`/`maxResults` paging over key-ordered records. Tokens are opaque
//! to clients: the hex of the last key returned.

use ferrocore_model::{Error, Result};

pub const MAX_PAGE_SIZE: usize = 250;
pub const DEFAULT_PAGE_SIZE: usize = 50;

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

impl PageRequest {
    pub fn size(&self) -> Result<usize> {
        match self.max_results {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(n) if (1..=MAX_PAGE_SIZE as i64).contains(&n) => Ok(n as usize),
            Some(n) => Err(Error::invalid(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and {MAX_PAGE_SIZE}"
            ))),
        }
    }

    /// The key after which this page starts.
    pub fn after(&self) -> Result<Option<String>> {
        let Some(token) = self.next_token.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let invalid = || Error::invalid(format!("The next token {token} is not valid."));
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(invalid)?;
        String::from_utf8(bytes).map(Some).map_err(|_| invalid())
    }
}

pub fn token_for(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Pages `items` (already in key order) that pass `keep`, starting after the request's token.
pub fn paginate<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
    request: &PageRequest,
) -> Result<Page<T>> {
    let size = request.size()?;
    let after = request.after()?;
    let mut remaining = items.into_iter().filter(|item| after.as_deref().is_none_or(|a| key(item) > a)).peekable();
    let page: Vec<T> = remaining.by_ref().take(size).collect();
    let next_token = match (remaining.peek(), page.last()) {
        (Some(_), Some(last)) => Some(token_for(key(last))),
        _ => None,
    };
    Ok(Page { items: page, next_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_tokens_to_the_end() {
        let keys: Vec<String> = (0..7).map(|i| format!("k{i}")).collect();
        let mut request = PageRequest { next_token: None, max_results: Some(3) };
        let mut seen = Vec::new();
        loop {
            let page = paginate(keys.clone(), |k| k.as_str(), &request).unwrap();
            seen.extend(page.items);
            match page.next_token {
                Some(token) => request.next_token = Some(token),
                None => break,
            }
        }
        assert_eq!(seen, keys);
    }

    #[test]
    fn bad_sizes_and_tokens_are_refused() {
        assert!(PageRequest { max_results: Some(0), ..Default::default() }.size().is_err());
        assert!(PageRequest { max_results: Some(251), ..Default::default() }.size().is_err());
        assert!(PageRequest { next_token: Some("zz".into()), ..Default::default() }.after().is_err());
    }
}
