//! Tokens of AWS IoT SQL. Keywords are case-insensitive; strings are single- or
//! double-quoted; comments are not supported (as on AWS).

use crate::SqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Ident(String),
    Int(i64),
    Decimal(f64),
    Str(String),
    Symbol(&'static str),
}

const SYMBOLS: [&str; 21] =
    ["<>", "!=", "<=", ">=", ",", ".", "(", ")", "[", "]", "{", "}", ":", "*", "+", "-", "/", "%", "=", "<", ">"];

pub fn tokenize(sql: &str) -> Result<Vec<(Token, usize)>, SqlError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((Token::Ident(chars[start..i].iter().collect()), start));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut decimal = false;
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                decimal = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    decimal = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            let token = if decimal {
                Token::Decimal(text.parse().map_err(|_| SqlError::at(start, format!("invalid number {text}")))?)
            } else {
                match text.parse() {
                    Ok(int) => Token::Int(int),
                    Err(_) => {
                        Token::Decimal(text.parse().map_err(|_| SqlError::at(start, format!("invalid number {text}")))?)
                    }
                }
            };
            tokens.push((token, start));
        } else if c == '\'' || c == '"' {
            let start = i;
            i += 1;
            let mut text = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(SqlError::at(start, "unterminated string literal")),
                    // A doubled quote stands for one quote character.
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        text.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        text.push(other);
                        i += 1;
                    }
                }
            }
            tokens.push((Token::Str(text), start));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| SqlError::at(i, format!("unexpected character '{c}'")))?;
            tokens.push((Token::Symbol(symbol), i));
            i += symbol.chars().count();
        }
    }
    Ok(tokens)
}
