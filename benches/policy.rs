//! Authorization decisions (issue [3/11] goal: ≤ 1 µs for a route with 100 rules): the
//! gateway's own `RoutePolicy`, compiled from rules as the config writes them, judging a
//! `tools/call` by a caller with two roles — the common allow (matched late), a denial by a
//! deny rule, a tool no rule names (every rule looked at), one with an argument condition,
//! and listing one tool; and a 500-tool list asked about item by item, as the list filter
//! does (issue goal: filtering a 500-tool list adds at most 100 µs).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::auth::{AuthMethod, Principal};
use portcullis::config::policy::{ConditionConfig, DefaultPolicy, Effect, RuleConfig};
use portcullis::policy::{Call, Decision, Kind, Roles, RoutePolicy};
use serde_json::json;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// 100 rules: 70 literal tool names for various roles, 20 tool families by glob needing a
/// permission, 6 denials, 4 with argument conditions.
fn rules() -> Vec<RuleConfig> {
    let mut rules = Vec::new();
    for i in 0..70 {
        rules.push(RuleConfig {
            tools: Some(vec![format!("tool_{i}")]),
            roles: vec![format!("team_{}", i % 7)],
            ..RuleConfig::default()
        });
    }
    for i in 0..20 {
        rules.push(RuleConfig {
            tools: Some(vec![format!("family{i}_*")]),
            require: vec![format!("use:family{i}")],
            ..RuleConfig::default()
        });
    }
    for i in 0..6 {
        rules.push(RuleConfig {
            effect: Effect::Deny,
            tools: Some(vec![format!("*_danger{i}")]),
            roles: strings(&["contractor"]),
            ..RuleConfig::default()
        });
    }
    for i in 0..4 {
        rules.push(RuleConfig {
            tools: Some(vec![format!("query_{i}")]),
            when: vec![ConditionConfig {
                argument: "/limit".into(),
                max: Some(100.0),
                ..ConditionConfig::default()
            }],
            ..RuleConfig::default()
        });
    }
    rules
}

fn decisions(c: &mut Criterion) {
    let Ok(policy) = RoutePolicy::new(&rules(), DefaultPolicy::Deny, false) else {
        eprintln!("policy: the bench rules do not compile; skipped");
        return;
    };
    let roles = Roles::new(&BTreeMap::from([
        ("team_6".to_owned(), strings(&["use:family19", "read:*"])),
        ("contractor".to_owned(), strings(&["read:*"])),
    ]));
    let mut caller = Principal::new("alice", AuthMethod::Jwt);
    caller.roles = strings(&["team_6", "contractor"]);
    let tool = |name: &'static str| Call {
        method: "tools/call",
        target: portcullis::policy::Target::Tool(name),
        arguments: None,
    };
    let arguments = json!({ "limit": 50, "q": "orders" });
    let conditional = Call {
        arguments: Some(&arguments),
        ..tool("query_3")
    };
    let cases = [
        ("allow_literal", tool("tool_69"), Decision::Allow),
        (
            "allow_glob_permission",
            tool("family19_export"),
            Decision::Allow,
        ),
        ("deny_rule", tool("family19_danger5"), Decision::Deny),
        ("no_rule_names_it", tool("unknown_tool"), Decision::Deny),
        ("allow_with_condition", conditional, Decision::Allow),
    ];
    let mut group = c.benchmark_group("policy_100_rules");
    for (name, call, expected) in cases {
        if policy.decide(&roles, &caller, &call) != expected {
            eprintln!("policy: {name} is not {expected:?}; skipped");
            continue;
        }
        group.bench_function(name, |b| {
            b.iter(|| policy.decide(black_box(&roles), black_box(&caller), black_box(&call)));
        });
    }
    group.bench_function("lists_one_tool", |b| {
        b.iter(|| policy.lists(&roles, &caller, Kind::Tool, black_box("tool_69")));
    });
    group.finish();

    // A list of 500 tools (the literal ones, twenty of each family, some dangerous, names
    // no rule knows), asked about item by item as the list filter does: the policy
    // narrowed to the caller once, then each name looked up; against one decision per
    // item.
    let names: Vec<String> = (0..500)
        .map(|i| match i % 5 {
            0 => format!("tool_{}", i % 70),
            1 | 2 => format!("family{}_{i}", i % 20),
            3 => format!("family{}_danger{}", i % 20, i % 6),
            _ => format!("other_{i}"),
        })
        .collect();
    let listing = policy.listing(&roles, &caller);
    let shown = names
        .iter()
        .filter(|name| listing.shows(Kind::Tool, name))
        .count();
    let decided = names
        .iter()
        .filter(|name| policy.lists(&roles, &caller, Kind::Tool, name))
        .count();
    if shown != decided || shown == 0 || shown == names.len() {
        eprintln!("policy: the listing shows {shown} tools, the policy {decided}; skipped");
        return;
    }
    let mut group = c.benchmark_group("list_500_tools_100_rules");
    group.bench_function("decided_one_by_one", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|name| policy.lists(&roles, &caller, Kind::Tool, black_box(name)))
                .count()
        });
    });
    group.bench_function("listing_made_then_looked_up", |b| {
        b.iter(|| {
            let listing = policy.listing(black_box(&roles), black_box(&caller));
            names
                .iter()
                .filter(|name| listing.shows(Kind::Tool, black_box(name)))
                .count()
        });
    });
    group.bench_function("listing_kept_looked_up", |b| {
        b.iter(|| {
            names
                .iter()
                .filter(|name| listing.shows(Kind::Tool, black_box(name)))
                .count()
        });
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
