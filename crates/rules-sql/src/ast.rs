//! The parsed form of a rule's SQL statement.

use crate::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Select,
    /// The topic filter in FROM (absent for Basic Ingest-only rules).
    pub from: Option<String>,
    pub condition: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// `SELECT VALUE <expr>`: the value itself is the result.
    Value(Expr),
    Items(Vec<Item>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `*`: every field of the payload.
    All,
    Expr { expr: Expr, alias: Option<String> },
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

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// A field of the payload (the root of a path).
    Field(String),
    /// `<expr>.<name>`.
    Member(Box<Expr>, String),
    /// `*` as a value: the whole payload.
    Payload,
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    /// `cast(<expr> AS <type>)`.
    Cast(Box<Expr>, String),
    /// `CASE <subject> WHEN <v> THEN <r> ... [ELSE <r>] END`.
    Case { subject: Box<Expr>, whens: Vec<(Expr, Expr)>, otherwise: Option<Box<Expr>> },
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
}
