//! The SQL of AWS IoT topic rules.
//!
//! [`parse`] reads a statement (`SELECT … FROM '<topic filter>' [WHERE …]`) or
//! explains where it is wrong (the text of a SqlParseException); [`evaluate`]
//! runs it over one message with AWS's semantics: a missing field is Undefined
//! (dropped from results, making comparisons Undefined and WHERE false), Null is a
//! value, numeric strings compare as numbers, `+` concatenates strings.
//!
//! Not yet: nested `(SELECT … FROM <array>)` queries, `[i]` indexing (use `get`),
//! and the functions that call other services or are not built (they parse, and
//! fail at evaluation with [`EvalError::Unsupported`]).

mod ast;
mod eval;
mod functions;
mod lexer;
mod parser;
mod value;

pub use ast::{BinaryOp, Expr, Item, Query, Select};
pub use eval::{Context, evaluate};
pub use parser::parse;
pub use value::Value;

/// A statement AWS would refuse with SqlParseException, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {offset})")]
pub struct SqlError {
    pub offset: usize,
    pub message: String,
}

impl SqlError {
    fn at(offset: usize, message: impl Into<String>) -> Self {
        Self { offset, message: message.into() }
    }
}

/// A message the statement cannot be evaluated on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("the function or conversion {0} is not supported by ferrocore yet")]
    Unsupported(String),
}
