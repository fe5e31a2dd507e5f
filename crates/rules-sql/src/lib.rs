//! The SQL of AWS IoT topic rules.
//!
//! [`parse`] reads a statement (`SELECT … FROM '<topic filter>' [WHERE …]`) or
//! explains where it is wrong (the text of a SqlParseException); [`evaluate`]
//! runs it over one message with AWS's semantics: a missing field is Undefined
//! (dropped from results, making comparisons Undefined and WHERE false), Null is a
//! value, numeric strings compare as numbers, `+` concatenates strings.
//!
//! A payload enters as [`payload_value`] (JSON, or [`Value::Binary`] when it is
//! not JSON) and a result leaves as [`output_bytes`]. Paths index arrays
//! (`a.b[1].c`), and nested queries (`(SELECT v FROM e WHERE n = 'x')`) run over
//! an array field. [`Template`] reads and renders the `${…}` substitution
//! templates of action fields.
//!
//! Evaluation is pure: the message's topic, client, clock reading and MQTT 5
//! properties come in a [`Context`], and the one function that reads another
//! service, `get_thing_shadow`, goes through the caller's [`Lookups`]. The
//! functions that call Lambda, DynamoDB, Secrets Manager, Machine Learning or
//! the registry, `decode(…, 'protobuf')`, and named time zones in
//! `parse_time`/`time_to_epoch` parse, and fail at evaluation with
//! [`EvalError::Unsupported`].

mod ast;
mod context;
mod eval;
mod functions;
mod lexer;
mod parser;
mod template;
mod value;

pub use ast::{BinaryOp, Expr, Item, Query, Select, Subquery};
pub use context::{Context, Lookups, MessageProperties};
pub use eval::{evaluate, evaluate_expression};
pub use parser::{parse, parse_expression};
pub use template::Template;
pub use value::{Value, output_bytes, payload_value};

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
