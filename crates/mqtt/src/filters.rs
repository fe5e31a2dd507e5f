//! Topic filters indexed level by level, so finding the filters that match a topic
//! costs in proportion to the topic's levels (and the wildcards along its path), not
//! to the number of filters. Each filter keeps its names with a value each: the
//! client ids subscribed to it with their subscription options, or the shared
//! subscriptions (`$share/<group>/<filter>`) over it.
//!
//! Matching follows `topic::matches`: `+` is one level, `#` its parent level and
//! every level below, and wildcards at the first level never match a topic
//! starting with `$`.

/// Hash maps with a fast hasher, seeded per process: a publish hashes every level
/// of its topic here, and the names are chosen by clients.
pub type Names<V> = HashMap<String, V>;
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

struct Node<V> {
    literal: HashMap<String, Node<V>>,
    plus: Option<Box<Node<V>>>,
    /// The filter that ends at this node, and its names.
    end: Option<(String, Names<V>)>,
    /// The filter `<this node's path>/#`, and its names.
    hash: Option<(String, Names<V>)>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self { literal: HashMap::default(), plus: None, end: None, hash: None }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.plus.is_none() && self.end.is_none() && self.hash.is_none()
    }
}

pub struct FilterIndex<V = ()> {
    root: Node<V>,
}

impl<V> Default for FilterIndex<V> {
    fn default() -> Self {
        Self { root: Node::default() }
    }
}

impl<V> FilterIndex<V> {
    /// Adds `name` under `filter` with `value` (replacing its value when it was there
    /// already); false when it was there already.
    pub fn insert(&mut self, filter: &str, name: &str, value: V) -> bool {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                let (_, names) = node.hash.get_or_insert_with(|| (filter.to_string(), Names::default()));
                return names.insert(name.to_string(), value).is_none();
            }
            node = match level {
                "+" => node.plus.get_or_insert_with(Box::default),
                _ => node.literal.entry(level.to_string()).or_default(),
            };
        }
        let (_, names) = node.end.get_or_insert_with(|| (filter.to_string(), Names::default()));
        names.insert(name.to_string(), value).is_none()
    }

    /// Removes `name` from `filter` (and the filter once nobody is left); false when it was not there.
    pub fn remove(&mut self, filter: &str, name: &str) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        remove_at(&mut self.root, &levels, name)
    }

    /// Calls `found` with each filter matching `topic` and its names.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut found: impl FnMut(&'a str, &'a Names<V>)) {
        let levels: Vec<&str> = topic.split('/').collect();
        let system = topic.starts_with('$');
        visit(&self.root, &levels, 0, system, &mut found);
    }
}

fn remove_at<V>(node: &mut Node<V>, levels: &[&str], name: &str) -> bool {
    match levels {
        [] => take_name(&mut node.end, name),
        ["#"] => take_name(&mut node.hash, name),
        [level, rest @ ..] => {
            let child = match *level {
                "+" => node.plus.as_deref_mut(),
                _ => node.literal.get_mut(*level),
            };
            let Some(child) = child else { return false };
            let removed = remove_at(child, rest, name);
            if child.is_empty() {
                match *level {
                    "+" => node.plus = None,
                    _ => {
                        node.literal.remove(*level);
                    }
                }
            }
            removed
        }
    }
}

fn take_name<V>(slot: &mut Option<(String, Names<V>)>, name: &str) -> bool {
    let Some((_, names)) = slot else { return false };
    let removed = names.remove(name).is_some();
    if names.is_empty() {
        *slot = None;
    }
    removed
}

fn visit<'a, V>(
    node: &'a Node<V>,
    levels: &[&str],
    depth: usize,
    system: bool,
    found: &mut impl FnMut(&'a str, &'a Names<V>),
) {
    // Wildcards at the first level never match `$` topics.
    let wildcards = !(system && depth == 0);
    let Some((level, rest)) = levels.split_first() else {
        // `<path>/#` also matches `<path>` itself (MQTT's parent rule).
        for (filter, names) in node.end.iter().chain(&node.hash) {
            found(filter, names);
        }
        return;
    };
    if wildcards && let Some((filter, names)) = &node.hash {
        found(filter, names);
    }
    if let Some(child) = node.literal.get(*level) {
        visit(child, rest, depth + 1, system, found);
    }
    if wildcards && let Some(child) = &node.plus {
        visit(child, rest, depth + 1, system, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic;

    /// Every topic and filter of up to three levels over a small alphabet (with `$`,
    /// empty levels and both wildcards): the index must agree with `topic::matches`.
    fn levels(alphabet: &[&str], most: usize) -> Vec<String> {
        let mut all: Vec<String> = alphabet.iter().map(|s| s.to_string()).collect();
        let mut last = all.clone();
        for _ in 1..most {
            last =
                last.iter().flat_map(|prefix| alphabet.iter().map(move |level| format!("{prefix}/{level}"))).collect();
            all.extend(last.clone());
        }
        all
    }

    #[test]
    fn the_index_agrees_with_topic_matching_everywhere() {
        let topics: Vec<String> =
            levels(&["a", "b", "$x", ""], 3).into_iter().filter(|t| topic::validate_name(t).is_ok()).collect();
        let filters: Vec<String> = levels(&["a", "b", "$x", "", "+", "#"], 3)
            .into_iter()
            .filter(|f| topic::validate_filter(f).is_ok())
            .collect();
        let mut index = FilterIndex::default();
        for filter in &filters {
            assert!(index.insert(filter, "c1", 1));
        }
        assert!(!index.insert(&filters[0], "c1", 2), "a name is kept once, with its latest value");
        for topic_name in &topics {
            let mut matched: Vec<&str> = Vec::new();
            index.for_each_match(topic_name, |filter, names| {
                assert_eq!(names.get("c1"), Some(if filter == filters[0] { &2 } else { &1 }));
                matched.push(filter);
            });
            matched.sort_unstable();
            let mut expected: Vec<&str> =
                filters.iter().filter(|f| topic::matches(f, topic_name)).map(String::as_str).collect();
            expected.sort_unstable();
            assert_eq!(matched, expected, "topic {topic_name:?}");
        }
    }

    #[test]
    fn removing_the_last_name_removes_the_filter_and_prunes_its_path() {
        let mut index = FilterIndex::default();
        index.insert("a/+/c/#", "c1", ());
        index.insert("a/+/c/#", "c2", ());
        index.insert("a/b", "c1", ());
        assert!(index.remove("a/+/c/#", "c1"));
        assert!(!index.remove("a/+/c/#", "c1"), "only once");
        let mut names = Vec::new();
        index.for_each_match("a/x/c/d", |_, found| names.extend(found.keys().cloned()));
        assert_eq!(names, vec!["c2".to_string()], "positive control: the other name stays");
        assert!(index.remove("a/+/c/#", "c2"));
        assert!(index.root.literal["a"].plus.is_none(), "the emptied path is pruned");
        assert!(!index.remove("x/y", "c1"));
        assert!(index.remove("a/b", "c1"));
        assert!(index.root.is_empty());
    }
}
