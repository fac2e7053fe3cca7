//! Conditions on a call's arguments (`when = [{ argument = "/limit", max = 100 }]`): each
//! reads one value by JSON pointer and tests it. A value that is missing or of the wrong
//! type fails the test, so an allow rule never lets through a call it cannot judge.

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

/// Longest regular expression accepted, and the compiled size bound: patterns come from
/// the operator, but a mistake should fail at start-up, not cost every request.
const MAX_PATTERN_LEN: usize = 1024;
const MAX_COMPILED_SIZE: usize = 1 << 20;

impl Condition {
    /// Compiles one condition; the error says what is wrong, for `portcullis check`.
    pub fn new(config: &ConditionConfig) -> Result<Self, String> {
        if !(config.argument.is_empty() || config.argument.starts_with('/')) {
            return Err(format!(
                "`{}` is not a JSON pointer (write `/name`, `/nested/name`, or `` for the \
                 whole arguments object)",
                config.argument
            ));
        }
        let mut tests = Vec::new();
        if let Some(v) = &config.equals {
            tests.push(Test::Equals(v.clone()));
        }
        if let Some(v) = &config.one_of {
            tests.push(Test::OneOf(v.clone()));
        }
        if let Some(pattern) = &config.matches {
            if pattern.len() > MAX_PATTERN_LEN {
                return Err(format!(
                    "`matches` is longer than {MAX_PATTERN_LEN} characters"
                ));
            }
            let regex = regex::RegexBuilder::new(pattern)
                .size_limit(MAX_COMPILED_SIZE)
                .build()
                .map_err(|e| format!("`matches` is not a valid regular expression: {e}"))?;
            tests.push(Test::Matches(regex));
        }
        if config.min.is_some() || config.max.is_some() {
            if let (Some(min), Some(max)) = (config.min, config.max)
                && min > max
            {
                return Err(format!("min ({min}) is greater than max ({max})"));
            }
            tests.push(Test::Range {
                min: config.min,
                max: config.max,
            });
        }
        match tests.len() {
            1 => Ok(Self {
                pointer: config.argument.clone(),
                test: tests.remove(0),
            }),
            0 => Err("give one test: equals, one_of, matches, or min/max".into()),
            _ => Err(
                "give one test per condition (equals, one_of, matches, or min/max); \
                      list several conditions for several tests"
                    .into(),
            ),
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
            Test::Range { min, max } => value.as_f64().is_some_and(|n| {
                n.is_finite() && min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)
            }),
        }
    }
}

/// JSON equality where `1` and `1.0` are the same number (TOML writes integers and floats
/// differently from what clients send).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
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
        assert!(!max.holds(Some(&json!({ "limit": "50" }))), "wrong type");
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
    fn bad_conditions_are_refused_with_a_reason() {
        let err = |c: ConditionConfig| Condition::new(&c).unwrap_err();
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
}
