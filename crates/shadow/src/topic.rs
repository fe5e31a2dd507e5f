//! The shadow topics under `$aws/things/<thing>/shadow[/name/<shadow>]/`.

/// What a request topic asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Get,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// A request published to a shadow topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowRequest<'a> {
    pub thing: &'a str,
    /// `None` for the classic (unnamed) shadow.
    pub shadow: Option<&'a str>,
    pub operation: Operation,
}

/// Recognises `$aws/things/<thing>/shadow/<op>` and
/// `$aws/things/<thing>/shadow/name/<shadow>/<op>` for get, update and delete.
pub fn parse_request(topic: &str) -> Option<ShadowRequest<'_>> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let levels: Vec<&str> = rest.split('/').collect();
    let (thing, shadow, operation) = match levels.as_slice() {
        [thing, "shadow", op] => (*thing, None, *op),
        [thing, "shadow", "name", shadow, op] => (*thing, Some(*shadow), *op),
        _ => return None,
    };
    let operation = match operation {
        "get" => Operation::Get,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        _ => return None,
    };
    (!thing.is_empty() && shadow.is_none_or(|s| !s.is_empty())).then_some(ShadowRequest { thing, shadow, operation })
}

/// `$aws/things/<thing>/shadow` or `$aws/things/<thing>/shadow/name/<shadow>`.
pub fn prefix(thing: &str, shadow: Option<&str>) -> String {
    match shadow {
        None => format!("$aws/things/{thing}/shadow"),
        Some(name) => format!("$aws/things/{thing}/shadow/name/{name}"),
    }
}

/// Whether a shadow name is valid: 1 to 64 of `[a-zA-Z0-9:_-]` (AWS also allows `$`).
pub fn valid_shadow_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b":_-$".contains(&b))
}
