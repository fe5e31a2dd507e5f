//! Substitution templates: action fields like `${topic(2)}/alerts` whose
//! `${<expression>}` parts are evaluated against the original payload (they
//! cannot see SELECT aliases).

use serde_json::Value as Json;

use crate::ast::Expr;
use crate::context::Context;
use crate::eval::evaluate_expression;
use crate::parser::parse_expression;
use crate::value::Value;
use crate::{EvalError, SqlError};

/// A parsed substitution template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(Expr),
}

impl Template {
    /// Reads literal text with `${<expression>}` parts. The expression ends at the
    /// `}` that closes `${`: braces of object literals and characters inside
    /// quoted strings do not end it. Offsets in errors count characters of `text`.
    pub fn parse(text: &str) -> Result<Template, SqlError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
                let start = i + 2;
                let end = closing_brace(&chars, start)
                    .ok_or_else(|| SqlError::at(i, "unterminated substitution template: '${' without its '}'"))?;
                let source: String = chars[start..end].iter().collect();
                let expr = parse_expression(&source).map_err(|err| SqlError::at(start + err.offset, err.message))?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Expr(expr));
                i = end + 1;
            } else {
                literal.push(chars[i]);
                i += 1;
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The text with every expression's value in place: a string as it is,
    /// numbers and booleans as text, arrays and objects as compact JSON, raw
    /// bytes as base64; Undefined and Null as nothing.
    pub fn render(&self, payload: &Value, context: &Context) -> Result<String, EvalError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr) => match evaluate_expression(expr, payload, context)?.to_json() {
                    None | Some(Json::Null) => {}
                    Some(Json::String(text)) => out.push_str(&text),
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(out)
    }

    /// Whether the template has no `${…}` part (it renders to its own text).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|part| matches!(part, Part::Text(_)))
    }

    /// Whether rendering may call [`Lookups`](crate::Lookups), which blocks.
    pub fn uses_lookups(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Expr(expr) if expr.uses_lookups()))
    }
}

/// The index of the `}` that ends an expression starting at `start`, skipping
/// nested braces and quoted strings (a doubled quote stays inside the string).
fn closing_brace(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0_usize;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(start) {
        match (quote, c) {
            // A doubled quote leaves and re-enters the string: the same as staying in.
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '{') => depth += 1,
            (None, '}') if depth == 0 => return Some(i),
            (None, '}') => depth -= 1,
            (None, _) => {}
        }
    }
    None
}
