//! Evaluating a query against one message, with AWS's Undefined/Null semantics.

use std::cmp::Ordering;

use crate::ast::{BinaryOp, Expr, Item, Query, Select, Subquery};
use crate::context::Context;
use crate::value::{Value, output_bytes};
use crate::{EvalError, functions};

/// The outcome for one message: `None` when WHERE did not hold.
pub fn evaluate(query: &Query, payload: &Value, context: &Context) -> Result<Option<Value>, EvalError> {
    Scope::message(payload, context).select_where(&query.select, query.condition.as_ref())
}

/// One expression over a message, as a substitution template evaluates it.
pub fn evaluate_expression(expr: &Expr, payload: &Value, context: &Context) -> Result<Value, EvalError> {
    Scope::message(payload, context).eval(expr)
}

/// The key an unaliased SELECT expression gets: a path's last name, a function's name.
fn default_name(expr: &Expr, index: usize) -> String {
    match expr {
        Expr::Field(name) | Expr::Member(_, name) => name.clone(),
        Expr::Call(name, _) => name.clone(),
        _ => format!("_{}", index + 1),
    }
}

fn set(fields: &mut Vec<(String, Value)>, key: &str, value: Value) {
    match fields.iter_mut().find(|(k, _)| k == key) {
        Some((_, existing)) => *existing = value,
        None => fields.push((key.to_string(), value)),
    }
}

/// `AS a.b` nests: `{"a": {"b": value}}`.
fn set_dotted(fields: &mut Vec<(String, Value)>, name: &str, value: Value) {
    match name.split_once('.') {
        None => set(fields, name, value),
        Some((head, rest)) => {
            let mut inner = match fields.iter().find(|(k, _)| k == head) {
                Some((_, Value::Object(inner))) => inner.clone(),
                _ => Vec::new(),
            };
            set_dotted(&mut inner, rest, value);
            set(fields, head, Value::Object(inner));
        }
    }
}

struct Scope<'a> {
    /// What field names resolve against: the payload, or one element in a nested query.
    payload: &'a Value,
    context: &'a Context,
    /// Whether `payload` is the message itself, whose published bytes `*` stands for.
    is_message: bool,
}

impl<'a> Scope<'a> {
    fn message(payload: &'a Value, context: &'a Context) -> Self {
        Scope { payload, context, is_message: true }
    }

    fn nested<'b>(&self, element: &'b Value) -> Scope<'b>
    where
        'a: 'b,
    {
        Scope { payload: element, context: self.context, is_message: false }
    }

    /// The select's result, or `None` when the condition does not hold.
    fn select_where(&self, select: &Select, condition: Option<&Expr>) -> Result<Option<Value>, EvalError> {
        if let Some(condition) = condition
            && self.eval(condition)?.to_bool() != Some(true)
        {
            return Ok(None);
        }
        self.select(select).map(Some)
    }

    fn select(&self, select: &Select) -> Result<Value, EvalError> {
        let items = match select {
            Select::Value(expr) => return self.eval(expr),
            Select::Items(items) => items,
        };
        let mut fields: Vec<(String, Value)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match item {
                Item::All => match self.payload {
                    // The payload's keys are unique: copied whole when first, merged otherwise.
                    Value::Object(all) if fields.is_empty() => fields.clone_from(all),
                    Value::Object(all) => all.iter().for_each(|(k, v)| set(&mut fields, k, v.clone())),
                    // A payload that is not an object (raw bytes too) passes through whole.
                    other if items.len() == 1 => return Ok(other.clone()),
                    _ => {}
                },
                Item::Expr { expr, alias } => {
                    let value = self.eval(expr)?;
                    if value != Value::Undefined {
                        let name = alias.clone().unwrap_or_else(|| default_name(expr, index));
                        set_dotted(&mut fields, &name, value);
                    }
                }
            }
        }
        Ok(Value::Object(fields))
    }

    /// Over an array, one result per element whose condition holds; over an
    /// object (AWS's `transform()` examples), the single result.
    fn subquery(&self, subquery: &Subquery) -> Result<Value, EvalError> {
        let condition = subquery.condition.as_ref();
        match self.eval(&subquery.from)? {
            Value::Array(elements) => {
                let mut results = Vec::new();
                for element in &elements {
                    match self.nested(element).select_where(&subquery.select, condition)? {
                        // An array cannot hold Undefined (a missing `SELECT VALUE` field).
                        None | Some(Value::Undefined) => {}
                        Some(result) => results.push(result),
                    }
                }
                Ok(Value::Array(results))
            }
            object @ Value::Object(_) => {
                Ok(self.nested(&object).select_where(&subquery.select, condition)?.unwrap_or(Value::Undefined))
            }
            _ => Ok(Value::Undefined),
        }
    }

    /// An argument's value; `*` given to a function of bytes is the payload as published.
    fn argument(&self, function: &str, arg: &Expr) -> Result<Value, EvalError> {
        if self.is_message && matches!(arg, Expr::Payload) && functions::reads_payload_bytes(function) {
            return Ok(self.payload_bytes());
        }
        self.eval(arg)
    }

    fn payload_bytes(&self) -> Value {
        match self.payload {
            Value::Binary(_) => self.payload.clone(),
            _ if !self.context.raw_payload.is_empty() => Value::Binary(self.context.raw_payload.to_vec()),
            json => Value::Binary(output_bytes(json)),
        }
    }

    fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        Ok(match expr {
            Expr::Literal(value) => value.clone(),
            Expr::Field(name) => self.payload.field(name),
            Expr::Member(base, name) => self.eval(base)?.field(name),
            Expr::Index(base, index) => match self.eval(base)? {
                Value::Array(items) => functions::element(&items, &self.eval(index)?),
                _ => Value::Undefined,
            },
            Expr::Payload => self.payload.clone(),
            Expr::Not(inner) => self.eval(inner)?.to_bool().map_or(Value::Undefined, |b| Value::Bool(!b)),
            Expr::Negate(inner) => match self.eval(inner)?.to_number() {
                Some(Value::Int(n)) => n.checked_neg().map_or(Value::Undefined, Value::Int),
                Some(Value::Decimal(d)) => Value::Decimal(-d),
                _ => Value::Undefined,
            },
            Expr::Binary(op, left, right) => binary(*op, self.eval(left)?, self.eval(right)?),
            Expr::Call(name, args) => {
                let values = args.iter().map(|arg| self.argument(name, arg)).collect::<Result<Vec<_>, _>>()?;
                functions::call(name, &values, self.context)?
            }
            Expr::Cast(inner, kind) => cast(self.eval(inner)?, kind)?,
            Expr::Case { subject, whens, otherwise } => {
                let subject = self.eval(subject)?;
                if subject == Value::Undefined {
                    return Ok(Value::Undefined);
                }
                for (candidate, result) in whens {
                    if equal(&subject, &self.eval(candidate)?) == Some(true) {
                        return self.eval(result);
                    }
                }
                match otherwise {
                    Some(result) => self.eval(result)?,
                    None => Value::Undefined,
                }
            }
            Expr::Object(fields) => {
                let mut out = Vec::new();
                for (key, value) in fields {
                    let value = self.eval(value)?;
                    if value != Value::Undefined {
                        set(&mut out, key, value);
                    }
                }
                Value::Object(out)
            }
            Expr::Array(items) => Value::Array(items.iter().map(|i| self.eval(i)).collect::<Result<_, _>>()?),
            Expr::Subquery(subquery) => self.subquery(subquery)?,
        })
    }
}

fn cast(value: Value, kind: &str) -> Result<Value, EvalError> {
    Ok(match kind.to_ascii_lowercase().as_str() {
        "int" | "integer" => match value {
            Value::Bool(b) => Value::Int(i64::from(b)),
            other => other.to_int().map_or(Value::Undefined, Value::Int),
        },
        "decimal" | "double" => match value {
            Value::Bool(b) => Value::Decimal(if b { 1.0 } else { 0.0 }),
            other => other.as_f64().map_or(Value::Undefined, Value::Decimal),
        },
        "bool" | "boolean" => match value {
            Value::Int(n) => Value::Bool(n != 0),
            Value::Decimal(d) => Value::Bool(d != 0.0),
            other => other.to_bool().map_or(Value::Undefined, Value::Bool),
        },
        "string" | "varchar" | "nvarchar" | "text" | "ntext" => value.to_text().map_or(Value::Undefined, Value::String),
        other => return Err(EvalError::Unsupported(format!("cast to {other}"))),
    })
}

/// `=`: Undefined on either side is Undefined; different types are unequal;
/// numbers compare by value; objects ignore key order.
fn equal(left: &Value, right: &Value) -> Option<bool> {
    Some(match (left, right) {
        (Value::Undefined, _) | (_, Value::Undefined) => return None,
        (Value::Int(_) | Value::Decimal(_), Value::Int(_) | Value::Decimal(_)) => left.as_f64() == right.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal(x, y) == Some(true))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| equal(v, &right.field(k)) == Some(true))
        }
        _ => left == right,
    })
}

/// Ordering for `< <= > >=`: numbers and numeric strings by value; anything else
/// (non-numeric strings included, per AWS's operator table) is Undefined.
fn order(left: &Value, right: &Value) -> Option<Ordering> {
    left.as_f64()?.partial_cmp(&right.as_f64()?)
}

fn binary(op: BinaryOp, left: Value, right: Value) -> Value {
    use BinaryOp::*;
    let boolean = |b: Option<bool>| b.map_or(Value::Undefined, Value::Bool);
    match op {
        And => match (left.to_bool(), right.to_bool()) {
            (Some(a), Some(b)) => Value::Bool(a && b),
            _ => Value::Undefined,
        },
        Or => match (left.to_bool(), right.to_bool()) {
            (Some(a), Some(b)) => Value::Bool(a || b),
            _ => Value::Undefined,
        },
        Eq => boolean(equal(&left, &right)),
        NotEq => boolean(equal(&left, &right).map(|b| !b)),
        Lt => boolean(order(&left, &right).map(|o| o == Ordering::Less)),
        LtEq => boolean(order(&left, &right).map(|o| o != Ordering::Greater)),
        Gt => boolean(order(&left, &right).map(|o| o == Ordering::Greater)),
        GtEq => boolean(order(&left, &right).map(|o| o != Ordering::Less)),
        // AWS: String + any value converts the other side to a string and concatenates.
        Add if matches!(left, Value::String(_)) || matches!(right, Value::String(_)) => {
            match (left.to_text(), right.to_text()) {
                (Some(a), Some(b)) => Value::String(a + &b),
                _ => Value::Undefined,
            }
        }
        Add | Sub | Mul | Div | Mod => arithmetic(op, &left, &right),
    }
}

/// `+ - * / %` on numbers (and numeric strings); `mod()` and `remainder()` are `%`.
pub(crate) fn arithmetic(op: BinaryOp, left: &Value, right: &Value) -> Value {
    let (Some(a), Some(b)) = (left.to_number(), right.to_number()) else {
        return Value::Undefined;
    };
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            let result = match op {
                BinaryOp::Add => x.checked_add(y),
                BinaryOp::Sub => x.checked_sub(y),
                BinaryOp::Mul => x.checked_mul(y),
                BinaryOp::Div => x.checked_div(y),
                BinaryOp::Mod => x.checked_rem(y),
                _ => None,
            };
            result.map_or(Value::Undefined, Value::Int)
        }
        (a, b) => {
            let (x, y) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            let result = match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div if y != 0.0 => x / y,
                BinaryOp::Mod if y != 0.0 => x % y,
                _ => return Value::Undefined,
            };
            if result.is_finite() { Value::Decimal(result) } else { Value::Undefined }
        }
    }
}
