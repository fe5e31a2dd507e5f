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
        self.after_within("")
    }

    /// [`Self::after`], for a listing whose keys all start with `prefix`: a token outside it is not valid.
    pub fn after_within(&self, prefix: &str) -> Result<Option<String>> {
        let Some(token) = self.next_token.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let invalid = || Error::invalid(format!("The next token {token} is not valid."));
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(invalid)?;
        let key = String::from_utf8(bytes).map_err(|_| invalid())?;
        if key.starts_with(prefix) { Ok(Some(key)) } else { Err(invalid()) }
    }
}

/// One page read from a key-ordered source in chunks, from a token: the caller fetches
/// [`PageBuilder::chunk`] entries after [`PageBuilder::after`] and offers each (a key and
/// its value, `None` when the value went away) until a page comes back. Chunks go on
/// until the page and one more match are found, so an unfiltered page costs its own
/// size and memory holds one chunk and the page.
pub(crate) struct PageBuilder<T> {
    size: usize,
    items: Vec<T>,
    after: Option<String>,
    chunk: usize,
}

/// Entries fetched at a time once the first chunk (a page and one more) was not enough.
const LATER_CHUNKS: usize = 500;

impl<T> PageBuilder<T> {
    pub(crate) fn new(request: &PageRequest, after: Option<String>) -> Result<Self> {
        let size = request.size()?;
        Ok(Self { size, items: Vec::with_capacity(size), after, chunk: size + 1 })
    }

    /// Starts the next fetch after `key`, read or not (nothing before it belongs to the page).
    pub(crate) fn skip_to(&mut self, key: String) {
        self.after = Some(key);
    }

    /// Where the next fetch starts: after this key.
    pub(crate) fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// How many entries the next fetch asks for.
    pub(crate) fn chunk(&self) -> usize {
        self.chunk
    }

    /// One fetched entry; the page once it is complete and another match follows.
    pub(crate) fn offer(
        &mut self,
        key: String,
        value: Option<T>,
        keep: &mut impl FnMut(&T) -> bool,
    ) -> Option<Page<T>> {
        if let Some(value) = value.filter(|value| keep(value)) {
            if self.items.len() == self.size {
                // The next page starts at this match: after the last entry read before it.
                let next_token = self.after.as_deref().map(token_for);
                return Some(Page { items: std::mem::take(&mut self.items), next_token });
            }
            self.items.push(value);
        }
        self.after = Some(key);
        None
    }

    /// A fetch's entries were all offered; the last page when the source had no more.
    pub(crate) fn chunk_done(&mut self, fetched: usize) -> Option<Page<T>> {
        if fetched < self.chunk {
            return Some(Page { items: std::mem::take(&mut self.items), next_token: None });
        }
        self.chunk = LATER_CHUNKS;
        None
    }
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_token: self.next_token }
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

    /// Pages from a source of keys `k00000`, `k00001`, … through the builder, as the registry fetches them.
    fn built_pages(n: usize, size: i64, keep: impl Fn(&usize) -> bool + Copy) -> Vec<(Vec<usize>, Option<String>)> {
        let source: Vec<(String, usize)> = (0..n).map(|i| (format!("k{i:05}"), i)).collect();
        let mut request = PageRequest { next_token: None, max_results: Some(size) };
        let mut pages = Vec::new();
        loop {
            let mut builder = PageBuilder::new(&request, request.after().unwrap()).unwrap();
            let page = loop {
                let after = builder.after().map(str::to_string);
                let chunk: Vec<(String, usize)> = source
                    .iter()
                    .filter(|(key, _)| after.as_deref().is_none_or(|a| key.as_str() > a))
                    .take(builder.chunk())
                    .cloned()
                    .collect();
                let fetched = chunk.len();
                let mut done = None;
                for (key, value) in chunk {
                    if let Some(page) = builder.offer(key, Some(value), &mut { keep }) {
                        done = Some(page);
                        break;
                    }
                }
                if let Some(page) = done.or_else(|| builder.chunk_done(fetched)) {
                    break page;
                }
            };
            pages.push((page.items, page.next_token.clone()));
            match page.next_token {
                Some(token) => request.next_token = Some(token),
                None => return pages,
            }
        }
    }

    #[test]
    fn a_built_page_ends_where_the_next_one_starts() {
        let evens = built_pages(10, 2, |v| v % 2 == 0);
        let items: Vec<Vec<usize>> = evens.iter().map(|(items, _)| items.clone()).collect();
        assert_eq!(items, [vec![0, 2], vec![4, 6], vec![8]]);
        assert!(evens[..2].iter().all(|(_, token)| token.is_some()) && evens[2].1.is_none());
        // A listing that ends exactly at a page boundary has no empty last page.
        let all = built_pages(4, 2, |_| true);
        assert_eq!(all.iter().map(|(items, _)| items.len()).collect::<Vec<_>>(), [2, 2]);
        // A filter that skips more than a chunk still finds its matches.
        let rare = built_pages(2_000, 3, |v| v % 700 == 0);
        assert_eq!(rare.into_iter().flat_map(|(items, _)| items).collect::<Vec<_>>(), [0, 700, 1400]);
    }

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
