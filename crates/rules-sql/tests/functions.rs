//! The function catalogue, group by group, against AWS's documented examples and
//! type tables.

use std::f64::consts::{E, FRAC_PI_2, FRAC_PI_4};

use ferrocore_rules_sql::{Context, EvalError, Value, evaluate_expression, parse_expression};
use proptest::prelude::*;
use serde_json::{Value as Json, json};

const NOW_MS: i64 = 1_481_825_251_155; // 2016-12-15T18:07:31.155Z, a Thursday

fn context() -> Context {
    Context {
        topic: "sensors/s7/temperature".into(),
        client_id: Some("sensor-7".into()),
        principal: Some("thumbprint".into()),
        account_id: "123456789012".into(),
        timestamp_ms: NOW_MS,
        new_uuid: "6c1a3a3e-0c57-4b7a-9a38-2a1b5d0c1e11".into(),
        trace_id: "trace-1".into(),
        sql_version: "2016-03-23".into(),
        ..Default::default()
    }
}

fn payload() -> Value {
    Value::from_json(&json!({"n": null, "s": "10", "arr": [1, 2]}))
}

fn value(expr: &str, context: &Context) -> Result<Value, EvalError> {
    let parsed = parse_expression(expr).unwrap_or_else(|err| panic!("{expr}: {err}"));
    evaluate_expression(&parsed, &payload(), context)
}

/// The JSON of `expr` over the payload; `None` for Undefined.
fn eval(expr: &str) -> Option<Json> {
    value(expr, &context()).unwrap_or_else(|err| panic!("{expr}: {err}")).to_json()
}

fn check(cases: &[(&str, Option<Json>)]) {
    for (expr, expected) in cases {
        assert_eq!(&eval(expr), expected, "{expr}");
    }
}

fn approx(expr: &str, expected: f64) {
    let actual = eval(expr).and_then(|json| json.as_f64()).unwrap_or_else(|| panic!("{expr} is not a number"));
    assert!((actual - expected).abs() <= 1e-12 * expected.abs().max(1.0), "{expr}: {actual} != {expected}");
}

fn unsupported(expr: &str) {
    assert!(matches!(value(expr, &context()), Err(EvalError::Unsupported(_))), "{expr}");
}

#[test]
fn math() {
    check(&[
        ("abs(-5)", Some(json!(5))),
        ("abs(-2.5)", Some(json!(2.5))),
        ("abs('-3')", Some(json!(3))),
        ("abs(true)", None),
        ("ceil(1.2)", Some(json!(2))),
        ("ceil(-1.2)", Some(json!(-1))),
        ("floor(-1.2)", Some(json!(-2))),
        ("floor('2.7')", Some(json!(2))),
        ("round(1.5)", Some(json!(2))),
        ("round(-1.5)", Some(json!(-2))),
        ("round(-1.1)", Some(json!(-1))),
        ("round(7)", Some(json!(7))),
        ("round([1])", None),
        ("sign(-7)", Some(json!(-1))),
        ("sign(0.0)", Some(json!(0))),
        ("sign('13')", Some(json!(1))),
        ("mod(8, 3)", Some(json!(2))),
        ("mod(-7, 3)", Some(json!(-1))),
        ("remainder(8.5, 3)", Some(json!(2.5))),
        ("mod(1, 0)", None),
        ("mod('x', 2)", None),
        ("nanvl(8, 3)", Some(json!(8))),
        ("nanvl(missing, 3)", Some(json!(3))),
        ("nanvl(n, 'x')", Some(json!("x"))),
        ("power(2, 5)", Some(json!(32))),
        ("power(2, -1)", Some(json!(0.5))),
        ("power('a', 2)", None),
        ("sqrt(9)", Some(json!(3))),
        ("sqrt(-1)", None),
        ("ln(0)", None),
        ("asin(2)", None),
        ("exp('x')", None),
        ("trunc(2.3123, 2)", Some(json!(2.31))),
        ("trunc(2.888, 2)", Some(json!(2.88))),
        ("trunc(-2.888, 1)", Some(json!(-2.8))),
        ("trunc(2.3, 0)", Some(json!(2))),
        ("trunc(2.00, 5)", Some(json!(2))),
        ("trunc(5, 2)", Some(json!(5))),
        ("trunc(1.23456, 50)", Some(json!(1.23456))),
        ("trunc(1.5, 'x')", None),
    ]);
    approx("acos(0)", FRAC_PI_2);
    approx("asin(1)", FRAC_PI_2);
    approx("atan(1)", FRAC_PI_4);
    approx("atan2(1, 0)", FRAC_PI_2);
    approx("cos(0)", 1.0);
    approx("cosh(2.3)", 5.037220649268761);
    approx("exp(1)", E);
    approx("ln(2.718281828459045)", 1.0);
    approx("log(100)", 2.0);
    approx("sin(0)", 0.0);
    approx("sinh(2.3)", 4.936961805545957);
    approx("tan(3)", -0.1425465430742778);
    approx("tanh(2.3)", 0.9800963962661914);
}

#[test]
fn bitwise() {
    check(&[
        ("bitand(13, 5)", Some(json!(5))),
        ("bitor(8, 5)", Some(json!(13))),
        ("bitxor(13, 5)", Some(json!(8))),
        ("bitnot(13)", Some(json!(-14))),
        ("bitand(13.7, '5')", Some(json!(5))),
        ("bitor(true, 1)", None),
        ("bitnot('x')", None),
    ]);
}

#[test]
fn rand_is_a_fraction_fixed_per_message() {
    let Ok(Value::Decimal(first)) = value("rand()", &context()) else { panic!("rand() is not a Decimal") };
    assert!((0.0..1.0).contains(&first));
    assert_eq!(value("rand()", &context()), Ok(Value::Decimal(first)));
    let next_message = Context { new_uuid: "another".into(), ..context() };
    assert_ne!(value("rand()", &next_message), Ok(Value::Decimal(first)));
}

#[test]
fn strings() {
    check(&[
        ("chr(65)", Some(json!("A"))),
        ("chr('49')", Some(json!("1"))),
        ("chr(66.9)", Some(json!("B"))),
        ("chr(200)", None),
        ("chr(true)", None),
        ("concat()", None),
        ("concat(1)", Some(json!("1"))),
        ("concat('con', 'cat')", Some(json!("concat"))),
        ("concat('a', 1, true, 2.5)", Some(json!("a1true2.5"))),
        ("concat([1, 2, 3], 'hello', [4, 5, 6])", Some(json!([1, 2, 3, "hello", 4, 5, 6]))),
        ("concat('a', missing)", None),
        ("concat('a', n)", None),
        ("endswith('cat', 'at')", Some(json!(true))),
        ("endswith(123, 3)", Some(json!(true))),
        ("startswith('ranger', 'ran')", Some(json!(true))),
        ("startswith(n, 'a')", None),
        ("indexof('abcd', 'bc')", Some(json!(1))),
        ("indexof('abcd', 'x')", Some(json!(-1))),
        ("indexof('héllo', 'l')", Some(json!(2))),
        ("length('hi')", Some(json!(2))),
        ("length('héllo')", Some(json!(5))),
        ("length(false)", Some(json!(5))),
        ("length(missing)", None),
        ("numbytes('hi')", Some(json!(2))),
        ("numbytes('€')", Some(json!(3))),
        ("lower('HELLO')", Some(json!("hello"))),
        ("lower(['HELLO'])", Some(json!("[\"hello\"]"))),
        ("upper('hello')", Some(json!("HELLO"))),
        ("upper(n)", None),
        ("lpad('hello', 2)", Some(json!("  hello"))),
        ("lpad(1, 3)", Some(json!("   1"))),
        ("lpad('a', -5)", Some(json!("a"))),
        ("lpad('a', 'x')", None),
        ("rpad('hello', 2.9)", Some(json!("hello  "))),
        ("rpad('a', '3')", Some(json!("a   "))),
        ("length(rpad('a', 5000))", Some(json!(1001))),
        ("ltrim(' h i ')", Some(json!("h i "))),
        ("rtrim(' h i ')", Some(json!(" h i"))),
        ("trim('\t hi \t')", Some(json!("hi"))),
        ("replace('abcdabcd', 'b', 'x')", Some(json!("axcdaxcd"))),
        ("replace('abc', 'b', n)", None),
        ("substring('012345', 0)", Some(json!("012345"))),
        ("substring('012345', 2.745)", Some(json!("2345"))),
        ("substring(123, 2)", Some(json!("3"))),
        ("substring('012345', -1)", Some(json!("012345"))),
        ("substring(true, 1.2)", Some(json!("rue"))),
        ("substring(false, -2.411E247)", Some(json!("false"))),
        ("substring('012345', 1, 3)", Some(json!("12"))),
        ("substring('012345', -50, 50)", Some(json!("012345"))),
        ("substring('012345', 3, 1)", Some(json!(""))),
        ("substring('héllo', 1, 2)", Some(json!("é"))),
        ("substring('abc', 'x')", None),
    ]);
}

#[test]
fn regular_expressions() {
    check(&[
        ("regexp_matches('aaaa', 'a{2,}')", Some(json!(true))),
        ("regexp_matches('aaaa', 'b')", Some(json!(false))),
        ("regexp_matches('abc', '(')", None),
        ("regexp_matches(n, 'a')", None),
        ("regexp_replace('abcd', 'bc', 'x')", Some(json!("axd"))),
        ("regexp_replace('abcd', 'b(.*)d', '$1')", Some(json!("ac"))),
        (r"regexp_replace('2024-01-15', '(\d+)-(\d+)-(\d+)', '$3/$2/$1')", Some(json!("15/01/2024"))),
        // Java reads `$12` as group 1 and "2" when there is no group 12.
        ("regexp_replace('ab', '(a)', '$12')", Some(json!("a2b"))),
        ("regexp_replace('ab', '(?P<first>a)', '[${first}]')", Some(json!("[a]b"))),
        (r"regexp_replace('ab', 'a', '\$')", Some(json!("$b"))),
        ("regexp_replace('ab', 'a', '$')", None),
        ("regexp_replace('ab', 'a', '$2')", None),
        ("regexp_replace('ab', 'a', '${nope}')", None),
        ("regexp_replace('aaa', 'a', '')", Some(json!(""))),
        ("regexp_replace('ab', '(x)?a', '[$1]')", Some(json!("[]b"))),
        ("regexp_substr('hihihello', 'hi')", Some(json!("hi"))),
        ("regexp_substr('hihihello', '(hi)*')", Some(json!("hihi"))),
        ("regexp_substr('abc', 'x')", None),
    ]);
}

#[test]
fn hashes_and_base64() {
    check(&[
        ("md2('hello')", Some(json!("a9046c73e00331af68917d3804f70655"))),
        ("md5('hello')", Some(json!("5d41402abc4b2a76b9719d911017c592"))),
        ("sha1('hello')", Some(json!("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"))),
        ("sha224('hello')", Some(json!("ea09ae9cc6768c50fcee903ed054556e5bfc8347907f12598aa24193"))),
        ("sha256('hello')", Some(json!("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"))),
        (
            "sha384('hello')",
            Some(json!(
                "59e1748777448c69de6b800d7a33bbfb9ff1b463e44354c3553bcdb9c666fa90125a3c79f90397bdf5f6a13de828684f"
            )),
        ),
        (
            "sha512('hello')",
            Some(json!(
                "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043"
            )),
        ),
        ("md5(1)", Some(json!("c4ca4238a0b923820dcc509a6f75849b"))),
        ("md5(n)", None),
        ("encode('hello', 'base64')", Some(json!("aGVsbG8="))),
        ("encode('hello', 'BASE64')", Some(json!("aGVsbG8="))),
        ("encode(n, 'base64')", None),
        ("decode('aGVsbG8=', 'base64')", Some(json!("hello"))),
        ("decode('aGVsbG8', 'base64')", Some(json!("hello"))),
        ("decode('eyJhIjogMX0=', 'base64').a", Some(json!(1))),
        ("decode('!!', 'base64')", Some(Json::Null)),
        ("decode(missing, 'base64')", None),
        // Bytes that are neither JSON nor UTF-8 stay bytes.
        ("encode(decode('/w==', 'base64'), 'base64')", Some(json!("/w=="))),
        ("md5(decode('/w==', 'base64'))", Some(json!("00594fd4f42ba43fc1ca0427a0576295"))),
    ]);
    unsupported("decode('CgJoaQ==', 'protobuf')");
    unsupported("encode('x', 'hex')");
}

#[test]
fn collections_and_types() {
    check(&[
        ("get(['a', 'b', 'c'], 1)", Some(json!("b"))),
        ("get(['a'], 1)", None),
        ("get(arr, '1')", Some(json!(2))),
        ("get(arr, 1.9)", Some(json!(2))),
        ("get('abc', 1)", Some(json!("b"))),
        ("get('abc', 5)", None),
        ("get({'a': 'b'}, 'a')", Some(json!("b"))),
        ("get({'a': 'b'}, 0)", None),
        ("get(5, 0)", None),
        ("isNull(n)", Some(json!(true))),
        ("isNull(missing)", Some(json!(false))),
        ("isUndefined(missing)", Some(json!(true))),
        ("isUndefined(floor([1, 2, 3]))", Some(json!(true))),
        (
            "transform('enrichArray', {'k': 1}, [{'a': 1}, 2, {'k': 0, 'b': 2}])",
            Some(json!([{"a": 1, "k": 1}, {"b": 2, "k": 1}])),
        ),
        ("transform('other', {'k': 1}, [{'a': 1}])", None),
        ("transform('enrichArray', 1, [{'a': 1}])", None),
        ("cast(1.9 AS Integer)", Some(json!(1))),
        ("cast('2.5' AS Double)", Some(json!(2.5))),
        ("cast(true AS Decimal)", Some(json!(1))),
        ("cast(12 AS Nvarchar)", Some(json!("12"))),
        ("cast(0 AS Boolean)", Some(json!(false))),
        ("cast(n AS String)", None),
    ]);
}

#[test]
fn message_context() {
    check(&[
        ("topic()", Some(json!("sensors/s7/temperature"))),
        ("topic(2)", Some(json!("s7"))),
        ("topic(3.0)", Some(json!("temperature"))),
        ("topic(0)", None),
        ("topic(4)", None),
        ("clientid()", Some(json!("sensor-7"))),
        ("principal()", Some(json!("thumbprint"))),
        ("accountid()", Some(json!("123456789012"))),
        ("timestamp()", Some(json!(NOW_MS))),
        ("newuuid()", Some(json!("6c1a3a3e-0c57-4b7a-9a38-2a1b5d0c1e11"))),
        ("traceid()", Some(json!("trace-1"))),
        ("sql_version()", Some(json!("2016-03-23"))),
    ]);
}

#[test]
fn parse_time_writes_joda_patterns() {
    check(&[
        ("parse_time('yyyy-MM-dd HH:mm:ss.SSS', 1481825251155)", Some(json!("2016-12-15 18:07:31.155"))),
        ("parse_time(\"yyyy.MM.dd G 'at' HH:mm:ss z\", timestamp())", Some(json!("2016.12.15 AD at 18:07:31 UTC"))),
        ("parse_time('yyyy', timestamp(), 'UTC')", Some(json!("2016"))),
        ("parse_time('yyyy-MM-dd HH:mm Z', timestamp(), '+05:30')", Some(json!("2016-12-15 23:37 +0530"))),
        ("parse_time('HH:mm ZZ z', timestamp(), 'UTC-08:00')", Some(json!("10:07 -08:00 -08:00"))),
        ("parse_time('dd MMM yy, h:mm a, EEEE', timestamp())", Some(json!("15 Dec 16, 6:07 PM, Thursday"))),
        ("parse_time('d/M/y H:m:s.S EEE MMMM', 0)", Some(json!("1/1/1970 0:0:0.0 Thu January"))),
        ("parse_time(\"''yyyy'' 'o''clock'\", 0)", Some(json!("'1970' o'clock"))),
        ("parse_time('yyyy-MM-dd', -86400000)", Some(json!("1969-12-31"))),
        ("parse_time(\"yyyy-MM-dd'T'HH:mm:ssX\", 0)", Some(json!("1970-01-01T00:00:00Z"))),
        ("parse_time('yyyy', 'x')", None),
    ]);
    unsupported("parse_time('yyyy', 0, 'America/Belize')");
    unsupported("parse_time('yyyy qq', 0)");
}

#[test]
fn time_to_epoch_reads_them_back() {
    check(&[
        (
            "time_to_epoch('2020-04-03 09:45:18 UTC+01:00', 'yyyy-MM-dd HH:mm:ss VV')",
            Some(json!(1_585_903_518_000_i64)),
        ),
        ("time_to_epoch('18 December 2015', 'dd MMMM yyyy')", Some(json!(1_450_396_800_000_i64))),
        ("time_to_epoch('18 dec 2015', 'dd MMM yyyy')", Some(json!(1_450_396_800_000_i64))),
        ("time_to_epoch('20161215180731', 'yyyyMMddHHmmss')", Some(json!(1_481_825_251_000_i64))),
        (
            "time_to_epoch('2016-12-15T18:07:31.155Z', \"yyyy-MM-dd'T'HH:mm:ss.SSSX\")",
            Some(json!(1_481_825_251_155_i64)),
        ),
        ("time_to_epoch('12/15/2016 6:07:31 PM -0500', 'MM/dd/yyyy h:mm:ss a Z')", Some(json!(1_481_843_251_000_i64))),
        (
            "time_to_epoch('Thu, 15 Dec 16 18:07:31 GMT', 'EEE, dd MMM yy HH:mm:ss z')",
            Some(json!(1_481_825_251_000_i64)),
        ),
        ("time_to_epoch('2016-12-15 18:07:31.1', 'yyyy-MM-dd HH:mm:ss.S')", Some(json!(1_481_825_251_100_i64))),
        ("time_to_epoch('2016-13-01', 'yyyy-MM-dd')", None),
        ("time_to_epoch('2016-02-30', 'yyyy-MM-dd')", None),
        ("time_to_epoch('2016-12-15 extra', 'yyyy-MM-dd')", None),
        ("time_to_epoch('2016-12', 'yyyy-MM-dd')", None),
        ("time_to_epoch(n, 'yyyy')", None),
    ]);
    unsupported("time_to_epoch('2007-12-03 10:15:30 PST', 'yyyy-MM-dd HH:mm:ss z')");
}

proptest! {
    #[test]
    fn parse_time_and_time_to_epoch_round_trip(
        ms in -2_000_000_000_000_i64..4_000_000_000_000,
        zone in prop::sample::select(vec!["UTC", "+05:30", "-08:00", "+14:00"]),
    ) {
        for pattern in ["yyyy-MM-dd'T'HH:mm:ss.SSSZZ", "yyyyMMddHHmmssSSSZ", "EEE, d MMM yyyy h:mm:ss.SSS a z"] {
            let expr = format!("time_to_epoch(parse_time(\"{pattern}\", {ms}, '{zone}'), \"{pattern}\")");
            prop_assert_eq!(eval(&expr), Some(json!(ms)), "{}", expr);
        }
    }
}
