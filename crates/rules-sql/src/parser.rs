//! A recursive-descent parser for AWS IoT SQL. Precedence, lowest first: OR, AND,
//! NOT, comparisons, `+ -`, `* / %`, unary `-`, member access and indexing.

use crate::SqlError;
use crate::ast::{BinaryOp, Expr, Item, Query, Select, Subquery};
use crate::functions;
use crate::lexer::{Token, tokenize};
use crate::value::Value;

/// Words that cannot name a field. `value` is not one: it is a keyword only right
/// after SELECT and followed by an expression (`SELECT value FROM …` selects a field).
const RESERVED: [&str; 14] =
    ["select", "as", "from", "where", "and", "or", "not", "case", "when", "then", "else", "end", "true", "false"];

pub fn parse(sql: &str) -> Result<Query, SqlError> {
    let mut parser = Parser::new(sql)?;
    let query = parser.query()?;
    parser.expect_end("the statement")?;
    Ok(query)
}

/// One expression and nothing after it (a substitution template's `${…}`).
pub fn parse_expression(text: &str) -> Result<Expr, SqlError> {
    let mut parser = Parser::new(text)?;
    let expr = parser.expr()?;
    parser.expect_end("the expression")?;
    Ok(expr)
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    position: usize,
    length: usize,
    /// Nesting of the expression being parsed (parentheses, NOT, unary minus, calls).
    depth: usize,
}

/// Deeper expressions are refused (each parenthesis level counts twice: NOT and unary):
/// parsing and evaluation recurse, and a rule must not
/// be able to exhaust a thread's stack.
const MAX_DEPTH: usize = 256;

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("'{name}'"),
        Token::Int(n) => n.to_string(),
        Token::Decimal(n) => n.to_string(),
        Token::Str(text) => format!("'{text}'"),
        Token::Symbol(symbol) => format!("'{symbol}'"),
    }
}

impl Parser {
    fn new(text: &str) -> Result<Self, SqlError> {
        Ok(Parser { tokens: tokenize(text)?, position: 0, length: text.chars().count(), depth: 0 })
    }

    fn expect_end(&self, what: &str) -> Result<(), SqlError> {
        match self.tokens.get(self.position) {
            Some((token, at)) => Err(SqlError::at(*at, format!("unexpected {} after {what}", describe(token)))),
            None => Ok(()),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.position).map_or(self.length, |(_, at)| *at)
    }

    fn error(&self, expected: &str) -> SqlError {
        match self.peek() {
            Some(token) => SqlError::at(self.offset(), format!("expected {expected}, found {}", describe(token))),
            None => SqlError::at(self.length, format!("expected {expected}, found the end of the statement")),
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(name)) if name.eq_ignore_ascii_case(word)) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), SqlError> {
        if self.keyword(word) { Ok(()) } else { Err(self.error(&word.to_uppercase())) }
    }

    fn symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), SqlError> {
        if self.symbol(symbol) { Ok(()) } else { Err(self.error(&format!("'{symbol}'"))) }
    }

    fn name(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Token::Ident(name)) if !RESERVED.contains(&name.to_ascii_lowercase().as_str()) => {
                let name = name.clone();
                self.position += 1;
                Ok(name)
            }
            _ => Err(self.error("a name")),
        }
    }

    fn query(&mut self) -> Result<Query, SqlError> {
        let select = self.select()?;
        let from = if self.keyword("from") {
            match self.peek() {
                Some(Token::Str(topic)) => {
                    let topic = topic.clone();
                    self.position += 1;
                    Some(topic)
                }
                _ => return Err(self.error("a topic filter in single quotes")),
            }
        } else {
            None
        };
        let condition = if self.keyword("where") { Some(self.expr()?) } else { None };
        Ok(Query { select, from, condition })
    }

    /// `SELECT VALUE <expr>` or `SELECT <items>`.
    fn select(&mut self) -> Result<Select, SqlError> {
        self.expect_keyword("select")?;
        Ok(if self.select_value() { Select::Value(self.expr()?) } else { Select::Items(self.items()?) })
    }

    /// The rest of a nested `(SELECT … FROM <path> [WHERE …])`, from SELECT on.
    fn subquery(&mut self) -> Result<Expr, SqlError> {
        let select = self.select()?;
        self.expect_keyword("from")?;
        let from = self.postfix()?;
        let condition = if self.keyword("where") { Some(self.expr()?) } else { None };
        self.expect_symbol(")")?;
        Ok(Expr::Subquery(Box::new(Subquery { select, from, condition })))
    }

    /// Consumes `VALUE` when it introduces `SELECT VALUE <expr>`.
    fn select_value(&mut self) -> bool {
        let is_value = matches!(self.peek(), Some(Token::Ident(word)) if word.eq_ignore_ascii_case("value"));
        let next = self.tokens.get(self.position + 1).map(|(t, _)| t);
        let field_use = match next {
            None => true,
            Some(Token::Ident(word)) => {
                ["from", "as", "where", "and", "or"].iter().any(|k| word.eq_ignore_ascii_case(k))
            }
            Some(Token::Symbol(symbol)) => !["(", "[", "{", "-"].contains(symbol),
            Some(_) => false,
        };
        if is_value && !field_use {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn items(&mut self) -> Result<Vec<Item>, SqlError> {
        let mut items = Vec::new();
        loop {
            if self.symbol("*") {
                items.push(Item::All);
            } else {
                let expr = self.expr()?;
                let alias = if self.keyword("as") { Some(self.dotted_name()?) } else { None };
                items.push(Item::Expr { expr, alias });
            }
            if !self.symbol(",") {
                return Ok(items);
            }
        }
    }

    /// An alias, possibly dotted (`AS a.b`).
    fn dotted_name(&mut self) -> Result<String, SqlError> {
        let mut name = self.name()?;
        while self.symbol(".") {
            name.push('.');
            name.push_str(&self.name()?);
        }
        Ok(name)
    }

    fn expr(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.conjunction()?;
        while self.keyword("or") {
            left = Expr::Binary(BinaryOp::Or, Box::new(left), Box::new(self.conjunction()?));
        }
        Ok(left)
    }

    fn conjunction(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.negation()?;
        while self.keyword("and") {
            left = Expr::Binary(BinaryOp::And, Box::new(left), Box::new(self.negation()?));
        }
        Ok(left)
    }

    fn negation(&mut self) -> Result<Expr, SqlError> {
        self.descend(|p| if p.keyword("not") { Ok(Expr::Not(Box::new(p.negation()?))) } else { p.comparison() })
    }

    /// Parses one level deeper, refusing expressions nested beyond [`MAX_DEPTH`].
    fn descend<T>(&mut self, parse: impl FnOnce(&mut Self) -> Result<T, SqlError>) -> Result<T, SqlError> {
        if self.depth >= MAX_DEPTH {
            return Err(SqlError::at(self.offset(), format!("the expression nests deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let parsed = parse(self);
        self.depth -= 1;
        parsed
    }

    fn comparison(&mut self) -> Result<Expr, SqlError> {
        let left = self.additive()?;
        for (symbol, op) in [
            ("=", BinaryOp::Eq),
            ("<>", BinaryOp::NotEq),
            ("!=", BinaryOp::NotEq),
            ("<=", BinaryOp::LtEq),
            (">=", BinaryOp::GtEq),
            ("<", BinaryOp::Lt),
            (">", BinaryOp::Gt),
        ] {
            if self.symbol(symbol) {
                return Ok(Expr::Binary(op, Box::new(left), Box::new(self.additive()?)));
            }
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.symbol("+") {
                BinaryOp::Add
            } else if self.symbol("-") {
                BinaryOp::Sub
            } else {
                return Ok(left);
            };
            left = Expr::Binary(op, Box::new(left), Box::new(self.multiplicative()?));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.symbol("*") {
                BinaryOp::Mul
            } else if self.symbol("/") {
                BinaryOp::Div
            } else if self.symbol("%") {
                BinaryOp::Mod
            } else {
                return Ok(left);
            };
            let right = self.unary()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, SqlError> {
        self.descend(|p| if p.symbol("-") { Ok(Expr::Negate(Box::new(p.unary()?))) } else { p.postfix() })
    }

    /// A primary followed by member accesses and indexes: `a.b[1].c`.
    fn postfix(&mut self) -> Result<Expr, SqlError> {
        let mut expr = self.primary()?;
        loop {
            if self.symbol(".") {
                expr = Expr::Member(Box::new(expr), self.name()?);
            } else if self.symbol("[") {
                let index = self.expr()?;
                self.expect_symbol("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, SqlError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.error("an expression"));
        };
        match token {
            Token::Int(n) => {
                self.position += 1;
                Ok(Expr::Literal(Value::Int(n)))
            }
            Token::Decimal(n) => {
                self.position += 1;
                Ok(Expr::Literal(Value::Decimal(n)))
            }
            Token::Str(text) => {
                self.position += 1;
                Ok(Expr::Literal(Value::String(text)))
            }
            Token::Symbol("(") => {
                self.position += 1;
                if matches!(self.peek(), Some(Token::Ident(word)) if word.eq_ignore_ascii_case("select")) {
                    return self.subquery();
                }
                let expr = self.expr()?;
                self.expect_symbol(")")?;
                Ok(expr)
            }
            Token::Symbol("*") => {
                self.position += 1;
                Ok(Expr::Payload)
            }
            Token::Symbol("[") => {
                self.position += 1;
                let mut items = Vec::new();
                if !self.symbol("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.symbol("]") {
                            break;
                        }
                        self.expect_symbol(",")?;
                    }
                }
                Ok(Expr::Array(items))
            }
            Token::Symbol("{") => {
                self.position += 1;
                let mut fields = Vec::new();
                if !self.symbol("}") {
                    loop {
                        let key = match self.peek() {
                            Some(Token::Str(key)) => key.clone(),
                            _ => return Err(self.error("a quoted key")),
                        };
                        self.position += 1;
                        self.expect_symbol(":")?;
                        fields.push((key, self.expr()?));
                        if self.symbol("}") {
                            break;
                        }
                        self.expect_symbol(",")?;
                    }
                }
                Ok(Expr::Object(fields))
            }
            Token::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                self.position += 1;
                match lower.as_str() {
                    "true" => return Ok(Expr::Literal(Value::Bool(true))),
                    "false" => return Ok(Expr::Literal(Value::Bool(false))),
                    "null" => return Ok(Expr::Literal(Value::Null)),
                    "case" => return self.case(),
                    _ => {}
                }
                if RESERVED.contains(&lower.as_str()) {
                    self.position -= 1;
                    return Err(self.error("an expression"));
                }
                if self.symbol("(") {
                    return self.call(word);
                }
                Ok(Expr::Field(word))
            }
            Token::Symbol(_) => Err(self.error("an expression")),
        }
    }

    fn call(&mut self, name: String) -> Result<Expr, SqlError> {
        let at = self.offset();
        if name.eq_ignore_ascii_case("cast") {
            let expr = self.expr()?;
            self.expect_keyword("as")?;
            let kind = self.name()?;
            self.expect_symbol(")")?;
            return Ok(Expr::Cast(Box::new(expr), kind));
        }
        let Some(canonical) = functions::canonical_name(&name) else {
            return Err(SqlError::at(at, format!("unknown function {name}")));
        };
        let mut args = Vec::new();
        if !self.symbol(")") {
            loop {
                args.push(self.expr()?);
                if self.symbol(")") {
                    break;
                }
                self.expect_symbol(",")?;
            }
        }
        Ok(Expr::Call(canonical.to_string(), args))
    }

    fn case(&mut self) -> Result<Expr, SqlError> {
        let subject = self.expr()?;
        let mut whens = Vec::new();
        while self.keyword("when") {
            let value = self.expr()?;
            self.expect_keyword("then")?;
            whens.push((value, self.expr()?));
        }
        if whens.is_empty() {
            return Err(self.error("WHEN"));
        }
        let otherwise = if self.keyword("else") { Some(Box::new(self.expr()?)) } else { None };
        self.expect_keyword("end")?;
        Ok(Expr::Case { subject: Box::new(subject), whens, otherwise })
    }
}
