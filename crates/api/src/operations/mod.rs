//! The HTTP bindings of AWS operations, generated from botocore's service models
//! by `tools/gen_operations.py`, and the matcher that names the operation a
//! request calls.

mod iot;
mod iot_data;

use std::collections::HashMap;
use std::sync::LazyLock;

use ferrocore_sigv4::percent_decode as decode;

use crate::error::ApiError;

/// One `requestUri` template, split into segments.
struct Binding {
    method: &'static str,
    name: &'static str,
    segments: Vec<Segment>,
}

enum Segment {
    Literal(&'static str),
    Label(&'static str),
    /// `{name+}`: the rest of the path, slashes included.
    Greedy(&'static str),
}

pub struct Table {
    bindings: Vec<Binding>,
}

/// The operation a request calls, with its path labels percent-decoded.
#[derive(Debug)]
pub struct Matched {
    pub name: &'static str,
    pub labels: HashMap<&'static str, String>,
}

impl Table {
    fn new(operations: &[(&'static str, &'static str, &'static str)]) -> Self {
        let mut bindings: Vec<Binding> = operations
            .iter()
            .map(|&(method, uri, name)| {
                let path = uri.split('?').next().unwrap_or(uri);
                let segments = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(label) => match label.strip_suffix('+') {
                            Some(greedy) => Segment::Greedy(greedy),
                            None => Segment::Label(label),
                        },
                        None => Segment::Literal(s),
                    })
                    .collect();
                Binding { method, name, segments }
            })
            .collect();
        // Literal segments win over labels: `/thing-groups/addThingToThingGroup`
        // is not a thing group called addThingToThingGroup.
        bindings
            .sort_by_key(|b| std::cmp::Reverse(b.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count()));
        Self { bindings }
    }

    /// Matches a raw (still percent-encoded) path.
    pub fn find(&self, method: &str, raw_path: &str) -> Result<Matched, ApiError> {
        let parts: Vec<&str> = raw_path.split('/').filter(|s| !s.is_empty()).collect();
        let mut path_known = false;
        for binding in &self.bindings {
            let Some(labels) = binding.matches(&parts) else {
                continue;
            };
            path_known = true;
            if binding.method == method {
                return Ok(Matched { name: binding.name, labels });
            }
        }
        Err(if path_known {
            ApiError::method_not_allowed(method, raw_path)
        } else {
            ApiError::unknown_operation(method, raw_path)
        })
    }
}

impl Binding {
    fn matches(&self, parts: &[&str]) -> Option<HashMap<&'static str, String>> {
        let mut labels = HashMap::new();
        let mut index = 0;
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => {
                    if parts.get(index) != Some(text) {
                        return None;
                    }
                }
                Segment::Label(name) => {
                    labels.insert(*name, decode(parts.get(index)?));
                }
                Segment::Greedy(name) => {
                    if index >= parts.len() {
                        return None;
                    }
                    labels.insert(*name, parts[index..].iter().map(|p| decode(p)).collect::<Vec<_>>().join("/"));
                    return Some(labels);
                }
            }
            index += 1;
        }
        (index == parts.len()).then_some(labels)
    }
}

pub static IOT: LazyLock<Table> = LazyLock::new(|| Table::new(iot::OPERATIONS));
pub static IOT_DATA: LazyLock<Table> = LazyLock::new(|| Table::new(iot_data::OPERATIONS));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_beat_labels() {
        let found = IOT.find("PUT", "/thing-groups/addThingToThingGroup").unwrap();
        assert_eq!(found.name, "AddThingToThingGroup");
        let found = IOT.find("GET", "/thing-groups/my%3Agroup").unwrap();
        assert_eq!((found.name, found.labels["thingGroupName"].as_str()), ("DescribeThingGroup", "my:group"));
    }

    #[test]
    fn greedy_labels_take_the_rest() {
        let found = IOT.find("GET", "/destinations/arn:aws:iot:us-east-1:1:ruledestination/http/abc").unwrap();
        assert_eq!(found.name, "GetTopicRuleDestination");
        assert_eq!(found.labels["arn"], "arn:aws:iot:us-east-1:1:ruledestination/http/abc");
    }

    #[test]
    fn every_generated_operation_is_reachable() {
        for &(method, uri, name) in iot::OPERATIONS {
            let path = uri.split('?').next().unwrap().replace('{', "x").replace(['}', '+'], "");
            assert_eq!(IOT.find(method, &path).unwrap().name, name, "{method} {uri}");
        }
    }
}
