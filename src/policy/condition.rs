//! Conditions on a call's arguments (`when = [{ argument = "/limit", max = 100 }]`): each
//! reads one value by JSON pointer and tests it. A value that is missing or of the wrong
//! type fails the test, so an allow rule never lets through a call it cannot judge.
//! Numbers compare exactly (integers as integers), and `min`/`max` read a string that is
//! exactly a JSON number as that number, since lax upstreams convert it.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;

use crate::config::policy::ConditionConfig;

#[derive(Debug, Clone)]
pub struct Condition {
    pointer: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    Matches(Regex),
    Range { min: Option<f64>, max: Option<f64> },
}

/// What is wrong with a condition: the key at fault (`min`, `max`), or `None` for the
/// condition as a whole, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: Option<&'static str>,
    pub message: String,
}

impl Problem {
    fn whole(message: impl Into<String>) -> Self {
        Self {
            key: None,
            message: message.into(),
        }
    }
}

/// Bounds that no number can be compared with (TOML accepts `nan` and `inf`: a deny rule
/// with `min = nan` would never apply, an allow rule with `max = inf` would have no
/// bound), and a `min` above `max` (no number passes).
fn bound_problems(min: Option<f64>, max: Option<f64>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (key, bound, meaning) in [("min", min, "lower"), ("max", max, "upper")] {
        if let Some(bound) = bound
            && !bound.is_finite()
        {
            problems.push(Problem {
                key: Some(key),
                message: format!(
                    "`{bound}` is not a finite number; write a number (such as 0 or 100), or \
                     leave `{key}` out for no {meaning} bound"
                ),
            });
        }
    }
    if let (Some(min), Some(max)) = (min, max)
        && min.is_finite()
        && max.is_finite()
        && min > max
    {
        problems.push(Problem::whole(format!(
            "min ({min}) is greater than max ({max}), so no value passes; swap them, or \
             correct the one that is wrong"
        )));
    }
    problems
}

/// Longest regular expression accepted, and the compiled size bound: patterns come from
/// the operator, but a mistake should fail at start-up, not cost every request.
const MAX_PATTERN_LEN: usize = 1024;
const MAX_COMPILED_SIZE: usize = 1 << 20;

impl Condition {
    /// Compiles one condition; the errors say what is wrong, each with the key it is about
    /// (`None`: the condition as a whole), for `portcullis check`.
    pub fn new(config: &ConditionConfig) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        if !(config.argument.is_empty() || config.argument.starts_with('/')) {
            problems.push(Problem::whole(format!(
                "`{}` is not a JSON pointer (write `/name`, `/nested/name`, or `` for the \
                 whole arguments object)",
                config.argument
            )));
        }
        let mut tests = Vec::new();
        if let Some(v) = &config.equals {
            tests.push(Test::Equals(v.clone()));
        }
        if let Some(v) = &config.one_of {
            tests.push(Test::OneOf(v.clone()));
        }
        if let Some(pattern) = &config.matches {
            let regex = if pattern.len() > MAX_PATTERN_LEN {
                Err(format!(
                    "`matches` is longer than {MAX_PATTERN_LEN} characters"
                ))
            } else {
                regex::RegexBuilder::new(pattern)
                    .size_limit(MAX_COMPILED_SIZE)
                    .build()
                    .map_err(|e| format!("`matches` is not a valid regular expression: {e}"))
            };
            match regex {
                Ok(regex) => tests.push(Test::Matches(regex)),
                Err(e) => problems.push(Problem::whole(e)),
            }
        }
        if config.min.is_some() || config.max.is_some() {
            problems.extend(bound_problems(config.min, config.max));
            tests.push(Test::Range {
                min: config.min,
                max: config.max,
            });
        }
        let test = tests.pop();
        if !tests.is_empty() {
            problems.push(Problem::whole(
                "give one test per condition (equals, one_of, matches, or min/max); \
                 list several conditions for several tests",
            ));
        }
        match test {
            Some(test) if problems.is_empty() => Ok(Self {
                pointer: config.argument.clone(),
                test,
            }),
            // A test that did not compile is reported as itself.
            None if problems.is_empty() => Err(vec![Problem::whole(
                "give one test: equals, one_of, matches, or min/max",
            )]),
            _ => Err(problems),
        }
    }

    /// Whether `arguments` passes. No arguments, a missing value or a value of the wrong
    /// type: `false`.
    pub fn holds(&self, arguments: Option<&Value>) -> bool {
        let Some(value) = arguments.and_then(|a| a.pointer(&self.pointer)) else {
            return false;
        };
        match &self.test {
            Test::Equals(expected) => json_eq(value, expected),
            Test::OneOf(options) => options.iter().any(|o| json_eq(value, o)),
            Test::Matches(regex) => value.as_str().is_some_and(|s| regex.is_match(s)),
            Test::Range { min, max } => number_in(value).is_some_and(|n| {
                min.is_none_or(|m| n.compare(Number::Float(m)).is_some_and(Ordering::is_ge))
                    && max.is_none_or(|m| n.compare(Number::Float(m)).is_some_and(Ordering::is_le))
            }),
        }
    }
}

/// A number as the conditions compare it: integers exactly (an `i64` or `u64` argument is
/// never rounded to the nearest `f64`), other numbers as `f64`.
#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn of(n: &serde_json::Number) -> Option<Self> {
        if let Some(i) = n.as_i64() {
            Some(Self::Int(i.into()))
        } else if let Some(u) = n.as_u64() {
            Some(Self::Int(u.into()))
        } else {
            n.as_f64().map(Self::Float)
        }
    }

    /// The exact order of two numbers; `None` when either is NaN.
    fn compare(self, other: Self) -> Option<Ordering> {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => Some(a.cmp(&b)),
            (Self::Float(a), Self::Float(b)) => a.partial_cmp(&b),
            (Self::Int(a), Self::Float(b)) => int_versus_float(a, b),
            (Self::Float(a), Self::Int(b)) => int_versus_float(b, a).map(Ordering::reverse),
        }
    }
}

/// The exact order of an integer and a float, without rounding either: `2^53 + 1` is
/// greater than the float `2^53`, although it has no `f64` of its own.
fn int_versus_float(int: i128, float: f64) -> Option<Ordering> {
    // 2^127, exactly representable: every i128 lies in [-2^127, 2^127).
    const TWO_TO_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if float.is_nan() {
        return None;
    }
    if float >= TWO_TO_127 {
        return Some(Ordering::Less);
    }
    if float < -TWO_TO_127 {
        return Some(Ordering::Greater);
    }
    // A whole float in range converts to i128 exactly.
    let floor = float.floor();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a whole number within the range of i128 converts exactly"
    )]
    let whole = floor as i128;
    match int.cmp(&whole) {
        // The float has a fraction above `whole`.
        Ordering::Equal if float > floor => Some(Ordering::Less),
        order => Some(order),
    }
}

/// The number an argument holds, for `min` and `max`: a JSON number, or a string that is
/// exactly a JSON number (`"5000"`, `"-1.5e3"`; not `" 5000"`, `"+5"`, `"0x10"`), since
/// lax upstreams turn such a string into the number before using it — a deny rule on
/// `/amount` must see `"5000"` as 5000. An integer string is read exactly (up to 39
/// digits), any other as the nearest `f64` (infinite beyond its range, as the number it
/// writes is beyond every finite bound).
fn number_in(value: &Value) -> Option<Number> {
    match value {
        Value::Number(n) => Number::of(n),
        Value::String(s) if is_json_number(s) => {
            let integer = !s.contains(['.', 'e', 'E']);
            match s.parse::<i128>() {
                Ok(i) if integer => Some(Number::Int(i)),
                _ => s.parse::<f64>().ok().map(Number::Float),
            }
        }
        _ => None,
    }
}

/// Whether `s` is, whole, a number in JSON's grammar (RFC 8259 section 6):
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if bytes.first() == Some(&b'-') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == bytes.len()
}

/// JSON equality where `1` and `1.0` are the same number (TOML writes integers and floats
/// differently from what clients send), and integers are compared exactly: two ids that
/// round to the same `f64` are still different ids.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (Number::of(x), Number::of(y)) {
            (Some(x), Some(y)) => x.compare(y) == Some(Ordering::Equal),
            _ => x == y,
        },
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition(config: ConditionConfig) -> Condition {
        Condition::new(&config).unwrap()
    }

    fn at(pointer: &str) -> ConditionConfig {
        ConditionConfig {
            argument: pointer.into(),
            ..ConditionConfig::default()
        }
    }

    #[test]
    fn each_test_and_its_failures() {
        let args =
            json!({ "limit": 50, "region": "eu-west-1", "q": "orders", "deep": { "x": 1.0 } });
        let max = condition(ConditionConfig {
            max: Some(100.0),
            ..at("/limit")
        });
        assert!(max.holds(Some(&args)));
        assert!(!max.holds(Some(&json!({ "limit": 101 }))));
        assert!(!max.holds(Some(&json!({ "limit": "fifty" }))), "wrong type");
        assert!(!max.holds(Some(&json!({ "limit": [50] }))), "wrong type");
        assert!(!max.holds(Some(&json!({}))), "missing");
        assert!(!max.holds(None), "no arguments");
        let min = condition(ConditionConfig {
            min: Some(10.0),
            ..at("/limit")
        });
        assert!(min.holds(Some(&args)) && !min.holds(Some(&json!({ "limit": 9 }))));

        let one_of = condition(ConditionConfig {
            one_of: Some(vec![json!("eu-west-1"), json!("eu-central-1")]),
            ..at("/region")
        });
        assert!(one_of.holds(Some(&args)));
        assert!(!one_of.holds(Some(&json!({ "region": "us-east-1" }))));

        let equals = condition(ConditionConfig {
            equals: Some(json!(1)),
            ..at("/deep/x")
        });
        assert!(equals.holds(Some(&args)), "1 equals 1.0");

        let matches = condition(ConditionConfig {
            matches: Some("^[a-z]+$".into()),
            ..at("/q")
        });
        assert!(matches.holds(Some(&args)));
        assert!(!matches.holds(Some(&json!({ "q": "DROP TABLE" }))));
        assert!(!matches.holds(Some(&json!({ "q": 5 }))));
    }

    #[test]
    fn large_integers_are_compared_exactly() {
        // 2^53 and 2^53 + 1 are the same f64.
        let id = condition(ConditionConfig {
            equals: Some(json!(9_007_199_254_740_992_u64)),
            ..at("/id")
        });
        assert!(id.holds(Some(&json!({ "id": 9_007_199_254_740_992_u64 }))));
        assert!(!id.holds(Some(&json!({ "id": 9_007_199_254_740_993_u64 }))));
        assert!(id.holds(Some(&json!({ "id": 9_007_199_254_740_992.0 }))));
        let ids = condition(ConditionConfig {
            one_of: Some(vec![json!(u64::MAX), json!(-9_007_199_254_740_993_i64)]),
            ..at("/id")
        });
        assert!(ids.holds(Some(&json!({ "id": u64::MAX }))));
        assert!(!ids.holds(Some(&json!({ "id": u64::MAX - 1 }))));
        assert!(ids.holds(Some(&json!({ "id": -9_007_199_254_740_993_i64 }))));
        assert!(!ids.holds(Some(&json!({ "id": -9_007_199_254_740_992_i64 }))));
        // Integral floats still equal integers; fractions do not.
        let one = condition(ConditionConfig {
            equals: Some(json!(1.0)),
            ..at("/n")
        });
        assert!(one.holds(Some(&json!({ "n": 1 }))));
        assert!(!one.holds(Some(&json!({ "n": 1.5 }))));

        // An integer argument is compared with a float bound without being rounded.
        let max = condition(ConditionConfig {
            max: Some(9_007_199_254_740_992.0),
            ..at("/n")
        });
        assert!(max.holds(Some(&json!({ "n": 9_007_199_254_740_992_u64 }))));
        assert!(!max.holds(Some(&json!({ "n": 9_007_199_254_740_993_u64 }))));
        assert!(!max.holds(Some(&json!({ "n": u64::MAX }))));
        let min = condition(ConditionConfig {
            min: Some(-9_007_199_254_740_992.0),
            ..at("/n")
        });
        assert!(min.holds(Some(&json!({ "n": -9_007_199_254_740_992_i64 }))));
        assert!(!min.holds(Some(&json!({ "n": -9_007_199_254_740_993_i64 }))));
        assert!(!min.holds(Some(&json!({ "n": i64::MIN }))));
        // Fractional bounds against integers, and floats against floats.
        let half = condition(ConditionConfig {
            min: Some(0.5),
            max: Some(2.5),
            ..at("/n")
        });
        for (n, inside) in [
            (json!(0), false),
            (json!(1), true),
            (json!(2), true),
            (json!(3), false),
            (json!(0.5), true),
            (json!(2.5), true),
            (json!(2.6), false),
            (json!(-1), false),
        ] {
            assert_eq!(half.holds(Some(&json!({ "n": n }))), inside, "{n}");
        }
    }

    #[test]
    fn bounds_read_strings_that_are_json_numbers() {
        // deny `pay` when /amount >= 1000: "5000" is 5000 to a lax upstream.
        let at_least = condition(ConditionConfig {
            min: Some(1000.0),
            ..at("/amount")
        });
        for amount in [
            "5000",
            "1000",
            "1e3",
            "1E+4",
            "1000.5",
            "99999999999999999999999999",
            "1e400",
        ] {
            assert!(
                at_least.holds(Some(&json!({ "amount": amount }))),
                "{amount}"
            );
        }
        for amount in ["999", "-5000", "0", "999.99", "-1e400", "1e-400"] {
            assert!(
                !at_least.holds(Some(&json!({ "amount": amount }))),
                "{amount}"
            );
        }
        // Read exactly, like numbers.
        let max = condition(ConditionConfig {
            max: Some(9_007_199_254_740_992.0),
            ..at("/id")
        });
        assert!(max.holds(Some(&json!({ "id": "9007199254740992" }))));
        assert!(!max.holds(Some(&json!({ "id": "9007199254740993" }))));
        // Only a string that is exactly a JSON number: anything else is of the wrong type.
        for not_a_number in [
            "", " 5000", "5000 ", "+5000", "05000", "5_000", "0x1388", "5000.", ".5", "1e", "1e+",
            "-", "--1", "5,000", "NaN", "Infinity", "inf", "1\n", "٥٠٠٠",
        ] {
            assert!(!is_json_number(not_a_number), "{not_a_number:?}");
            assert!(
                !at_least.holds(Some(&json!({ "amount": not_a_number }))),
                "{not_a_number:?}"
            );
        }
        for number in ["0", "-0", "10", "-1.25", "0.5", "1e10", "2E-3", "-0.0e+0"] {
            assert!(is_json_number(number), "{number}");
        }
        // equals and one_of still compare types: "1" is not 1.
        let equals = condition(ConditionConfig {
            equals: Some(json!(1)),
            ..at("/n")
        });
        assert!(!equals.holds(Some(&json!({ "n": "1" }))));
    }

    #[test]
    fn integers_and_floats_are_ordered_exactly() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let big = 9_007_199_254_740_992.0;
        for (int, float, order) in [
            (9_007_199_254_740_993, big, Some(Greater)),
            (9_007_199_254_740_992, big, Some(Equal)),
            (9_007_199_254_740_991, big, Some(Less)),
            (1, 1.5, Some(Less)),
            (2, 1.5, Some(Greater)),
            (-1, -1.5, Some(Greater)),
            (-2, -1.5, Some(Less)),
            (i128::MAX, 1e39, Some(Less)),
            (i128::MIN, -1e39, Some(Greater)),
            (
                i128::MIN,
                -170_141_183_460_469_231_731_687_303_715_884_105_728.0,
                Some(Equal),
            ),
            (0, f64::INFINITY, Some(Less)),
            (0, f64::NEG_INFINITY, Some(Greater)),
            (0, f64::NAN, None),
        ] {
            assert_eq!(int_versus_float(int, float), order, "{int} vs {float}");
        }
    }

    #[test]
    fn bad_conditions_are_refused_with_a_reason() {
        let err = |c: ConditionConfig| {
            let problems = Condition::new(&c).unwrap_err();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].key, None);
            problems[0].message.clone()
        };
        assert!(err(at("limit")).contains("not a JSON pointer"));
        assert!(err(at("/limit")).contains("give one test"));
        assert!(
            err(ConditionConfig {
                min: Some(1.0),
                equals: Some(json!(1)),
                ..at("/limit")
            })
            .contains("one test per condition")
        );
        assert!(
            err(ConditionConfig {
                matches: Some("(".into()),
                ..at("/q")
            })
            .contains("not a valid regular expression")
        );
        assert!(
            err(ConditionConfig {
                min: Some(5.0),
                max: Some(1.0),
                ..at("/n")
            })
            .contains("greater than max")
        );
    }

    #[test]
    fn bounds_that_are_not_finite_are_refused_with_their_key() {
        let problems = |min: Option<f64>, max: Option<f64>| -> Vec<(Option<&str>, String)> {
            Condition::new(&ConditionConfig {
                min,
                max,
                ..at("/n")
            })
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.into_iter().map(|p| (p.key, p.message)).collect())
        };
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let found = problems(Some(bad), None);
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, Some("min"));
            assert!(found[0].1.contains("not a finite number"), "{found:?}");
            assert!(found[0].1.contains("no lower bound"), "{found:?}");
            let found = problems(Some(1.0), Some(bad));
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, Some("max"));
            assert!(found[0].1.contains("no upper bound"), "{found:?}");
        }
        // Every problem at once.
        let found = problems(Some(f64::NAN), Some(f64::INFINITY));
        let keys: Vec<Option<&str>> = found.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [Some("min"), Some("max")]);
        let found = problems(Some(5.0), Some(1.0));
        assert_eq!(found.len(), 1);
        assert!(found[0].1.contains("greater than max"), "{found:?}");
        // Finite bounds, and equal ones, are fine.
        assert!(problems(Some(-1e300), Some(1e300)).is_empty());
        assert!(problems(Some(3.0), Some(3.0)).is_empty());
        assert!(problems(None, Some(0.0)).is_empty());
    }
}
