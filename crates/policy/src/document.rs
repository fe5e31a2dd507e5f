//! Policy documents: parsing, validation, and statement matching.

use serde_json::{Map, Value};

use crate::condition::{Condition, parse_conditions};
use crate::context::Context;
use crate::pattern::{Token, matches, tokens};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document is not a valid policy (MalformedPolicyException).
    #[error("{0}")]
    Malformed(String),
}

fn malformed(message: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(message.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// Part of a resource pattern as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text in which `*` and `?` are wildcards.
    Pattern(String),
    /// `${*}`, `${?}`, `${$}`: the character itself, never a wildcard.
    Escaped(char),
    /// `${name}`, resolved from the context.
    Variable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourcePattern {
    pieces: Vec<Piece>,
}

impl ResourcePattern {
    fn parse(text: &str, variables_allowed: bool) -> Self {
        if !variables_allowed {
            return Self { pieces: vec![Piece::Pattern(text.to_string())] };
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let Some(length) = rest[start..].find('}') else {
                break;
            };
            if start > 0 {
                pieces.push(Piece::Pattern(rest[..start].to_string()));
            }
            let name = &rest[start + 2..start + length];
            pieces.push(match name {
                "*" | "?" | "$" => Piece::Escaped(name.chars().next().unwrap_or('$')),
                _ => Piece::Variable(name.to_string()),
            });
            rest = &rest[start + length + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Pattern(rest.to_string()));
        }
        Self { pieces }
    }

    /// The pattern with variables substituted, or `None` if a variable cannot be
    /// resolved (AWS leaves it as literal text, which matches no real resource).
    fn resolve(&self, context: &Context) -> Option<Vec<Token>> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Pattern(text) => out.extend(tokens(text)),
                Piece::Escaped(c) => out.push(Token::Char(*c)),
                Piece::Variable(name) => out.extend(context.substitution(name)?.chars().map(Token::Char)),
            }
        }
        Some(out)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher<T> {
    Any(Vec<T>),
    NoneOf(Vec<T>),
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    effect: Effect,
    actions: Matcher<Vec<Token>>,
    resources: Matcher<ResourcePattern>,
    conditions: Vec<Condition>,
}

/// A parsed, valid policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// Versions of the policy language; only 2012-10-17 resolves policy variables.
const VERSIONS: &[&str] = &["2012-10-17", "2008-10-17"];

fn string_list(value: &Value, field: &str) -> Result<Vec<String>, PolicyError> {
    let items = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| malformed(format!("{field} entries must be strings")))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(malformed(format!("{field} must be a string or a non-empty list of strings")));
        }
    };
    if items.iter().any(String::is_empty) {
        return Err(malformed(format!("{field} entries must not be empty")));
    }
    Ok(items)
}

fn validate_action(action: &str) -> Result<(), PolicyError> {
    let valid = action == "*"
        || action.split_once(':').is_some_and(|(service, name)| {
            !service.is_empty()
                && service.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
        });
    if valid { Ok(()) } else { Err(malformed(format!("Policy contains an invalid action: {action}"))) }
}

fn either<'a>(
    statement: &'a Map<String, Value>,
    positive: &str,
    negative: &str,
) -> Result<(&'a Value, bool), PolicyError> {
    match (statement.get(positive), statement.get(negative)) {
        (Some(value), None) => Ok((value, false)),
        (None, Some(value)) => Ok((value, true)),
        (Some(_), Some(_)) => Err(malformed(format!("A statement cannot have both {positive} and {negative}"))),
        (None, None) => Err(malformed(format!("Policy statement must contain {positive}"))),
    }
}

fn parse_statement(value: &Value, variables_allowed: bool) -> Result<Statement, PolicyError> {
    let statement = value.as_object().ok_or_else(|| malformed("Each policy statement must be a JSON object"))?;
    if let Some(key) = statement.keys().find(|k| {
        !["Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"].contains(&k.as_str())
    }) {
        return Err(malformed(format!("Policy statement contains an unsupported element: {key}")));
    }
    let effect = match statement.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(other) => return Err(malformed(format!("Invalid effect: {other}"))),
        None => return Err(malformed("Policy statement must contain Effect")),
    };
    let (action_value, not_action) = either(statement, "Action", "NotAction")?;
    let actions = string_list(action_value, "Action")?;
    for action in &actions {
        validate_action(action)?;
    }
    let actions: Vec<Vec<Token>> = actions.iter().map(|a| tokens(a)).collect();
    let (resource_value, not_resource) = either(statement, "Resource", "NotResource")?;
    let resources: Vec<ResourcePattern> =
        string_list(resource_value, "Resource")?.iter().map(|r| ResourcePattern::parse(r, variables_allowed)).collect();
    let conditions = match statement.get("Condition") {
        Some(value) => parse_conditions(value, variables_allowed)?,
        None => Vec::new(),
    };
    Ok(Statement {
        effect,
        actions: if not_action { Matcher::NoneOf(actions) } else { Matcher::Any(actions) },
        resources: if not_resource { Matcher::NoneOf(resources) } else { Matcher::Any(resources) },
        conditions,
    })
}

impl Policy {
    pub fn parse(document: &str) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_str(document)
            .map_err(|err| malformed(format!("Policy document is not valid JSON: {err}")))?;
        let root = value.as_object().ok_or_else(|| malformed("Policy document must be a JSON object"))?;
        if let Some(key) = root.keys().find(|k| !["Version", "Id", "Statement"].contains(&k.as_str())) {
            return Err(malformed(format!("Policy document contains an unsupported element: {key}")));
        }
        let version = match root.get("Version") {
            None => None,
            Some(Value::String(v)) if VERSIONS.contains(&v.as_str()) => Some(v.as_str()),
            Some(other) => return Err(malformed(format!("Invalid policy version: {other}"))),
        };
        let variables_allowed = version == Some("2012-10-17");
        let statements = match root.get("Statement") {
            Some(Value::Array(items)) if !items.is_empty() => items.iter().collect::<Vec<_>>(),
            Some(item @ Value::Object(_)) => vec![item],
            Some(_) => return Err(malformed("Statement must be an object or a non-empty list")),
            None => return Err(malformed("Policy document must contain Statement")),
        };
        let statements =
            statements.into_iter().map(|s| parse_statement(s, variables_allowed)).collect::<Result<_, _>>()?;
        Ok(Self { statements })
    }

    /// Adds the context names this policy reads (variables of its resources, keys
    /// and variables of its conditions): a context needs no other.
    pub fn context_names<'a>(&'a self, out: &mut std::collections::BTreeSet<&'a str>) {
        for statement in &self.statements {
            let (Matcher::Any(resources) | Matcher::NoneOf(resources)) = &statement.resources;
            for resource in resources {
                out.extend(resource.pieces.iter().filter_map(|piece| match piece {
                    Piece::Variable(name) => Some(name.as_str()),
                    _ => None,
                }));
            }
            for condition in &statement.conditions {
                condition.names(out);
            }
        }
    }

    /// The effects of the statements that apply to `action` on `resource`.
    pub(crate) fn matching_effects<'a>(
        &'a self,
        action: &'a str,
        resource: &'a str,
        context: &'a Context,
    ) -> impl Iterator<Item = Effect> + 'a {
        self.statements.iter().filter(move |s| s.applies(action, resource, context)).map(|s| s.effect)
    }
}

impl Statement {
    /// An unresolvable variable never widens an Allow: a `NotResource` or negated
    /// condition with one does not apply, while a Deny keeps applying.
    fn applies(&self, action: &str, resource: &str, context: &Context) -> bool {
        let allow = self.effect == Effect::Allow;
        let action_matches = |patterns: &Vec<Vec<Token>>| patterns.iter().any(|p| matches(p, action, true));
        let action_ok = match &self.actions {
            Matcher::Any(patterns) => action_matches(patterns),
            Matcher::NoneOf(patterns) => !action_matches(patterns),
        };
        let resource_ok = match &self.resources {
            Matcher::Any(patterns) => {
                patterns.iter().any(|p| p.resolve(context).is_some_and(|tokens| matches(&tokens, resource, false)))
            }
            Matcher::NoneOf(patterns) => patterns.iter().all(|p| match p.resolve(context) {
                Some(tokens) => !matches(&tokens, resource, false),
                None => !allow,
            }),
        };
        action_ok && resource_ok && self.conditions.iter().all(|c| c.holds(context, allow))
    }
}

/// The size AWS counts against the policy limit: characters other than whitespace.
pub fn significant_chars(document: &str) -> usize {
    document.chars().filter(|c| !c.is_whitespace()).count()
}
