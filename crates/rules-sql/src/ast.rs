//! The parsed form of a rule's SQL statement.

use crate::value::Value;

/// The function that reads another service (a thing's shadow) during evaluation.
const LOOKUP_FUNCTION: &str = "get_thing_shadow";

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    /// The topic filter in FROM (absent for Basic Ingest-only rules).
    pub from: Option<String>,
    pub condition: Option<Expr>,
}

impl Query {
    /// Whether evaluating the query may call [`Lookups`](crate::Lookups), which
    /// blocks: the caller then evaluates it off the async runtime.
    pub fn uses_lookups(&self) -> bool {
        self.select.calls(LOOKUP_FUNCTION) || self.condition.as_ref().is_some_and(Expr::uses_lookups)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// `SELECT VALUE <expr>`: the value itself is the result.
    Value(Expr),
    Items(Vec<Item>),
}

impl Select {
    fn calls(&self, function: &str) -> bool {
        match self {
            Select::Value(expr) => expr.calls(function),
            Select::Items(items) => items.iter().any(|item| match item {
                Item::All => false,
                Item::Expr { expr, .. } => expr.calls(function),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `*`: every field of the payload.
    All,
    Expr {
        expr: Expr,
        alias: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// A nested `(SELECT … FROM <path> [WHERE …])` (SQL version 2016-03-23): the
/// select runs once per element of the array that FROM names.
#[derive(Debug, Clone, PartialEq)]
pub struct Subquery {
    pub select: Select,
    /// A path in the enclosing scope (`e`, `a.b`, `get(x, 'k')`).
    pub from: Expr,
    pub condition: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// A field of the payload (the root of a path).
    Field(String),
    /// `<expr>.<name>`.
    Member(Box<Expr>, String),
    /// `<expr>[<index>]`: 0-based array indexing.
    Index(Box<Expr>, Box<Expr>),
    /// `*` as a value: the whole payload.
    Payload,
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    /// `cast(<expr> AS <type>)`.
    Cast(Box<Expr>, String),
    /// `CASE <subject> WHEN <v> THEN <r> ... [ELSE <r>] END`.
    Case {
        subject: Box<Expr>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
    Subquery(Box<Subquery>),
}

impl Expr {
    /// Whether the expression calls `function` (a catalogue name) anywhere inside.
    pub(crate) fn calls(&self, function: &str) -> bool {
        match self {
            Expr::Literal(_) | Expr::Field(_) | Expr::Payload => false,
            Expr::Member(inner, _) | Expr::Not(inner) | Expr::Negate(inner) | Expr::Cast(inner, _) => {
                inner.calls(function)
            }
            Expr::Index(left, right) | Expr::Binary(_, left, right) => left.calls(function) || right.calls(function),
            Expr::Call(name, args) => name == function || args.iter().any(|a| a.calls(function)),
            Expr::Case { subject, whens, otherwise } => {
                subject.calls(function)
                    || whens.iter().any(|(when, then)| when.calls(function) || then.calls(function))
                    || otherwise.as_ref().is_some_and(|e| e.calls(function))
            }
            Expr::Object(fields) => fields.iter().any(|(_, e)| e.calls(function)),
            Expr::Array(items) => items.iter().any(|e| e.calls(function)),
            Expr::Subquery(sub) => {
                sub.select.calls(function)
                    || sub.from.calls(function)
                    || sub.condition.as_ref().is_some_and(|c| c.calls(function))
            }
        }
    }

    /// Whether the expression reads another service while it is evaluated.
    pub(crate) fn uses_lookups(&self) -> bool {
        self.calls(LOOKUP_FUNCTION)
    }
}
