//! Authorization that understands MCP (and the list filtering of the answer rewrite): what
//! a caller may do is decided per call — the method and the tool, prompt or resource it
//! names, and optionally its arguments — from the route's rules and the caller's roles,
//! permissions and scopes.
//!
//! Decision, for one call:
//! 1. Calls that name a tool, prompt or resource (`tools/call`, `prompts/get`,
//!    `resources/read|subscribe|unsubscribe`, `completion/complete`), methods a rule
//!    names explicitly, and methods that are not MCP's (vendor methods, anything the
//!    gateway does not know: they fall to the route's default) are judged (a 2026-07-28
//!    `subscriptions/listen` also as a `resources/subscribe` of each URI it lists:
//!    [`listened_resources`]). `initialize`, `ping`, `server/discover` and
//!    `notifications/*` never are (the config may not name them); the other MCP methods
//!    that name nothing (`tools/list`, `logging/setLevel`, `tasks/get`, …) only when a
//!    rule names them. A method that differs from an MCP method only by letter case or
//!    lookalike characters never gets here: it is refused at parse time
//!    ([`crate::mcp::methods`]).
//!    A call naming a resource URI that is not in normal form ([`uri`]) is not judged but
//!    refused (authorization answers -32602), since rules match URIs as written.
//! 2. A rule *applies* when its methods and target patterns match the call, its argument
//!    conditions hold, and the caller is who it is about (any of `roles`, every permission
//!    in `require`). Allow rules also need every scope in `scopes`.
//! 3. Any applicable deny wins. Otherwise any applicable allow allows. Otherwise, if an
//!    allow rule fell short only by scopes and the route does step-up, the answer names
//!    the scopes to get (HTTP 403 `insufficient_scope`); else the route's default applies
//!    (deny unless configured otherwise).
//!
//! Lists: an item is listed when a call to it could be allowed — the same decision with
//! the arguments unknown (allow rules' conditions taken as satisfiable, deny rules with
//! conditions set aside, since they refuse only some arguments). So a caller never sees a
//! tool it cannot call, and calling one it cannot see is refused by the same rules
//! ([`RoutePolicy::lists`], asked about each item by [`lists`]).

pub mod condition;
pub mod layer;
pub mod lists;
pub mod switches;
pub mod uri;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use self::condition::Condition;
use crate::config::ConfigError;
use crate::config::policy::{DefaultPolicy, Effect, RuleConfig};
use crate::glob::Glob;
pub use crate::mcp::call::{Call, Target};
use crate::request::Principal;

/// Methods no rule may gate: the session's life and its notifications.
pub fn never_gated(method: &str) -> bool {
    matches!(method, "initialize" | "ping" | "server/discover")
        || method.starts_with("notifications/")
}

/// The kinds of thing a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
}

impl Kind {
    fn slot(self) -> usize {
        match self {
            Self::Tool => 0,
            Self::Prompt => 1,
            Self::Resource => 2,
        }
    }
}

/// The kind of thing `target` names.
fn kind_of(target: &Target) -> Option<Kind> {
    match target {
        Target::Tool(_) => Some(Kind::Tool),
        Target::Prompt(_) => Some(Kind::Prompt),
        Target::Resource(_) => Some(Kind::Resource),
        Target::None => None,
    }
}

/// The resource URIs a 2026-07-28 `subscriptions/listen` asks to hear about
/// (`params.notifications.resourceSubscriptions`), each to be judged as a
/// `resources/subscribe` of it ([`Call::subscribe`]): the method replaces
/// `resources/subscribe`, and a route that allows only some resources must not let a
/// client watch the others. Empty for every other method. `Err`, with the message for the
/// client (-32602), when the list is there but is not a list of strings: an upstream might
/// read it some other way.
pub fn listened_resources<'a>(
    method: &str,
    params: Option<&'a Value>,
) -> Result<Vec<&'a str>, &'static str> {
    if method != "subscriptions/listen" {
        return Ok(Vec::new());
    }
    let list = params
        .and_then(|p| p.get("notifications"))
        .and_then(|n| n.get("resourceSubscriptions"));
    match list {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(uris)) => uris
            .iter()
            .map(|uri| uri.as_str().ok_or(NOT_A_URI_LIST))
            .collect(),
        Some(_) => Err(NOT_A_URI_LIST),
    }
}

const NOT_A_URI_LIST: &str =
    "`notifications.resourceSubscriptions` must be a list of resource URIs";

/// The methods that name a tool, prompt or resource.
fn names_a_target(method: &str) -> bool {
    matches!(
        method,
        "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete"
    )
}

/// Methods that name nothing but still fall to the route's default when no rule names
/// them. `tasks/list` (2025-11-25): the gateway seals every task id the upstream lists for
/// the caller, so an upstream that lists every task it holds — it cannot tell the
/// gateway's callers apart — would hand each caller the others' tasks. A route lets it
/// through by naming it in an allow rule (trusting the upstream to list only the session's
/// own tasks) or with `default_policy = "allow"`. The other `tasks/*` methods are not
/// judged: a task id opens only for the caller it was issued to (`mcp::tasks`).
fn judged_without_rules(method: &str) -> bool {
    method == "tasks/list"
}

/// What the client is told when `call` is denied: names what was asked for, never the
/// rule that refused it.
pub fn denial_message(call: &Call<'_>) -> String {
    let (what, name) = match call.target {
        Target::Tool(n) => ("tool", n),
        Target::Prompt(n) => ("prompt", n),
        Target::Resource(n) => ("resource", n),
        Target::None => ("method", call.method),
    };
    let mut shown: String = name.chars().take(128).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    format!("{what} `{shown}` is not allowed")
}

/// Why `call` cannot be judged at all, for the client (JSON-RPC -32602): it names a
/// resource URI that is not in normal form ([`uri::check`]), which a rule written for the
/// normal form would not see. Only calls are checked; list results are not.
pub fn unjudgeable(call: &Call<'_>) -> Option<String> {
    let Target::Resource(name) = call.target else {
        return None;
    };
    let why = uri::check(name).err()?;
    Some(format!(
        "resource URI `{}` is refused: {}",
        uri::shown(name, 64),
        why.reason()
    ))
}

/// The outcome for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Allowed with more scopes: every scope to ask for (step-up).
    NeedScopes(Vec<String>),
}

/// `[roles]`, compiled: role → permission patterns.
#[derive(Debug, Clone, Default)]
pub struct Roles(BTreeMap<String, Vec<Glob>>);

impl Roles {
    pub fn new(config: &BTreeMap<String, Vec<String>>) -> Self {
        Self(
            config
                .iter()
                .map(|(role, perms)| (role.clone(), perms.iter().map(|p| Glob::new(p)).collect()))
                .collect(),
        )
    }

    pub fn contains(&self, role: &str) -> bool {
        self.0.contains_key(role)
    }

    /// Whether any of `roles` grants `permission`.
    fn grants(&self, roles: &[String], permission: &str) -> bool {
        roles.iter().any(|role| {
            self.0
                .get(role)
                .is_some_and(|perms| perms.iter().any(|p| p.matches(permission)))
        })
    }
}

#[derive(Debug, Clone)]
struct Rule {
    effect: Effect,
    /// Exact method names; `None`: the methods that name the rule's targets.
    methods: Option<Vec<String>>,
    tools: Option<Vec<Glob>>,
    prompts: Option<Vec<Glob>>,
    resources: Option<Vec<Glob>>,
    roles: Vec<String>,
    require: Vec<String>,
    scopes: Vec<String>,
    when: Vec<Condition>,
}

/// How far a rule matches a call, before looking at who is calling.
#[derive(PartialEq, Eq)]
enum Fit {
    No,
    /// Method and target match; conditions hold (or the arguments are unknown).
    Yes,
}

impl Rule {
    fn patterns(&self, kind: Kind) -> Option<&[Glob]> {
        match kind {
            Kind::Tool => self.tools.as_deref(),
            Kind::Prompt => self.prompts.as_deref(),
            Kind::Resource => self.resources.as_deref(),
        }
    }

    fn has_targets(&self) -> bool {
        self.tools.is_some() || self.prompts.is_some() || self.resources.is_some()
    }

    /// Method and target; `arguments`: `Some` to test the conditions, `None` when they are
    /// unknown (listing), where conditions count as satisfiable.
    fn fits(&self, call: &Call<'_>, arguments_known: bool) -> Fit {
        let method_ok = match &self.methods {
            Some(methods) => methods.iter().any(|m| m == call.method),
            None => names_a_target(call.method),
        };
        if !method_ok {
            return Fit::No;
        }
        let target_ok = match kind_of(&call.target) {
            // A rule naming targets applies only to calls naming one of them.
            Some(kind) => match self.patterns(kind) {
                Some(patterns) => patterns.iter().any(|p| p.matches(call.target.name())),
                None => !self.has_targets(),
            },
            None => !self.has_targets(),
        };
        if !target_ok {
            return Fit::No;
        }
        if arguments_known && !self.when.iter().all(|c| c.holds(call.arguments)) {
            return Fit::No;
        }
        Fit::Yes
    }

    /// Whether the caller is who the rule is about (roles, permissions; not scopes).
    fn about(&self, roles: &Roles, principal: &Principal) -> bool {
        (self.roles.is_empty() || self.roles.iter().any(|r| principal.roles.contains(r)))
            && self
                .require
                .iter()
                .all(|perm| roles.grants(&principal.roles, perm))
    }
}

/// The rules that can apply to calls naming one kind of target: by literal name, and those
/// with a wildcard pattern for the kind or no target at all (looked at for every name).
#[derive(Debug, Clone, Default)]
struct KindIndex {
    literal: HashMap<String, Vec<usize>>,
    wild: Vec<usize>,
}

/// One route's rules and default.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    rules: Vec<Rule>,
    /// Per kind (tool, prompt, resource): which rules to look at for a name, so a decision
    /// costs a hash lookup plus the wildcard rules, not a scan of every rule.
    index: [KindIndex; 3],
    /// Rules without targets: the candidates for calls that name nothing.
    untargeted: Vec<usize>,
    default: DefaultPolicy,
    /// Answer a shortfall of scopes with 403 `insufficient_scope` instead of a denial.
    step_up: bool,
    /// Methods some rule names explicitly (judged besides the target-naming ones).
    named_methods: HashSet<String>,
}

impl RoutePolicy {
    /// Compiles a route's rules. Errors carry the index of the rule and the key, for
    /// `portcullis check` (`[(rule index, key, message)]`).
    pub fn new(
        rules: &[RuleConfig],
        default: DefaultPolicy,
        step_up: bool,
    ) -> Result<Self, Vec<(usize, String, String)>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        let mut named_methods = HashSet::new();
        for (i, rule) in rules.iter().enumerate() {
            let mut when = Vec::new();
            for (j, c) in rule.when.iter().enumerate() {
                match Condition::new(c) {
                    Ok(c) => when.push(c),
                    Err(problems) => errors.extend(problems.into_iter().map(|p| {
                        let key = match p.key {
                            Some(key) => format!("when[{j}].{key}"),
                            None => format!("when[{j}]"),
                        };
                        (i, key, p.message)
                    })),
                }
            }
            if let Some(methods) = &rule.methods {
                for (j, m) in methods.iter().enumerate() {
                    if let Some(known) = crate::mcp::methods::lookalike_of(m) {
                        errors.push((
                            i,
                            format!("methods[{j}]"),
                            format!("`{m}` differs from the MCP method `{known}` only in letter case or lookalike characters; calls to it are always refused"),
                        ));
                    }
                    if never_gated(m) {
                        errors.push((
                            i,
                            format!("methods[{j}]"),
                            format!("`{m}` is never subject to policy (the session must be able to start and be notified)"),
                        ));
                    }
                    named_methods.insert(m.clone());
                }
            }
            if rule.effect == Effect::Deny && !rule.scopes.is_empty() {
                errors.push((
                    i,
                    "scopes".into(),
                    "scopes only apply to allow rules (a deny rule is about roles and permissions)"
                        .into(),
                ));
            }
            let globs = |list: &Option<Vec<String>>| {
                list.as_ref()
                    .map(|l| l.iter().map(|p| Glob::new(p)).collect::<Vec<_>>())
            };
            compiled.push(Rule {
                effect: rule.effect,
                methods: rule.methods.clone(),
                tools: globs(&rule.tools),
                prompts: globs(&rule.prompts),
                resources: globs(&rule.resources),
                roles: rule.roles.clone(),
                require: rule.require.clone(),
                scopes: rule.scopes.clone(),
                when,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut index: [KindIndex; 3] = Default::default();
        let mut untargeted = Vec::new();
        for (i, rule) in compiled.iter().enumerate() {
            if !rule.has_targets() {
                untargeted.push(i);
                index.iter_mut().for_each(|k| k.wild.push(i));
                continue;
            }
            for kind in [Kind::Tool, Kind::Prompt, Kind::Resource] {
                let Some(patterns) = rule.patterns(kind) else {
                    continue;
                };
                let slot = &mut index[kind.slot()];
                if patterns.iter().any(|p| !p.is_literal()) {
                    slot.wild.push(i);
                    continue;
                }
                for pattern in patterns {
                    let rules = slot.literal.entry(pattern.as_str().to_owned()).or_default();
                    if !rules.contains(&i) {
                        rules.push(i);
                    }
                }
            }
        }
        Ok(Self {
            rules: compiled,
            index,
            untargeted,
            default,
            step_up,
            named_methods,
        })
    }

    /// A policy that allows everything (routes with `default_policy = "allow"` and no rules).
    pub fn allow_all() -> Self {
        Self {
            default: DefaultPolicy::Allow,
            ..Self::default()
        }
    }

    /// Whether the policy lets everything through without looking (default allow, no
    /// rules): then the body need not even be parsed for it.
    pub fn is_open(&self) -> bool {
        self.default == DefaultPolicy::Allow && self.rules.is_empty()
    }

    /// Whether `method` is judged at all.
    pub fn judges(&self, method: &str) -> bool {
        !never_gated(method)
            && (names_a_target(method)
                || judged_without_rules(method)
                || self.named_methods.contains(method)
                || !crate::mcp::methods::is_client_request(method))
    }

    /// The decision for `call` by `principal`.
    pub fn decide(&self, roles: &Roles, principal: &Principal, call: &Call<'_>) -> Decision {
        if !self.judges(call.method) {
            return Decision::Allow;
        }
        self.evaluate(roles, principal, call, true)
    }

    /// Whether an item of a list result is shown to `principal`: a call to it could be
    /// allowed (or could be after a step-up).
    pub fn lists(&self, roles: &Roles, principal: &Principal, kind: Kind, name: &str) -> bool {
        let (method, target) = match kind {
            Kind::Tool => ("tools/call", Target::Tool(name)),
            Kind::Prompt => ("prompts/get", Target::Prompt(name)),
            Kind::Resource => ("resources/read", Target::Resource(name)),
        };
        let call = Call {
            method,
            target,
            arguments: None,
        };
        self.evaluate(roles, principal, &call, false) != Decision::Deny
    }

    fn evaluate(
        &self,
        roles: &Roles,
        principal: &Principal,
        call: &Call<'_>,
        arguments_known: bool,
    ) -> Decision {
        let mut allowed = false;
        let mut needed: Option<&[String]> = None;
        let (by_name, always): (&[usize], &[usize]) = match kind_of(&call.target) {
            Some(kind) => {
                let slot = &self.index[kind.slot()];
                let named = slot.literal.get(call.target.name());
                (named.map_or(&[], Vec::as_slice), &slot.wild)
            }
            None => (&[], &self.untargeted),
        };
        for rule in by_name
            .iter()
            .chain(always)
            .filter_map(|&i| self.rules.get(i))
        {
            // With unknown arguments, a conditional deny refuses only some calls.
            if !arguments_known && rule.effect == Effect::Deny && !rule.when.is_empty() {
                continue;
            }
            if rule.fits(call, arguments_known) == Fit::No || !rule.about(roles, principal) {
                continue;
            }
            match rule.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow => {
                    if rule.scopes.iter().all(|s| principal.scopes.contains(s)) {
                        allowed = true;
                    } else if needed.is_none() {
                        needed = Some(&rule.scopes);
                    }
                }
            }
        }
        if allowed {
            return Decision::Allow;
        }
        if self.step_up
            && let Some(scopes) = needed
        {
            return Decision::NeedScopes(scopes.to_vec());
        }
        match self.default {
            DefaultPolicy::Allow => Decision::Allow,
            DefaultPolicy::Deny => Decision::Deny,
        }
    }
}

/// The checks of `[[routes.policy]]` that need the policy's compiler (`gateway::check`):
/// every rule of every route compiles, each problem with its TOML path. A rule with a key
/// left out as in error is not judged: it holds a default in its place.
pub fn check(config: &crate::config::Config, read: &crate::config::Read<'_>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (position, r) in config.routes.iter().enumerate() {
        let at = read.route(position);
        let Err(problems) = RoutePolicy::new(&r.policy, r.default_policy, r.step_up) else {
            continue;
        };
        for (i, key, message) in problems {
            let rule = format!("{at}.policy[{i}]");
            if !read.dropped_within(&rule) {
                errors.push(ConfigError::new(format!("{rule}.{key}"), message));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::policy::ConditionConfig;
    use crate::request::AuthMethod;

    fn principal(roles: &[&str], scopes: &[&str]) -> Principal {
        let mut p = Principal::new("alice", AuthMethod::Jwt);
        p.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        p.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        p
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn allow_tools(tools: &[&str]) -> RuleConfig {
        RuleConfig {
            tools: Some(strings(tools)),
            ..RuleConfig::default()
        }
    }

    fn roles() -> Roles {
        Roles::new(&BTreeMap::from([
            ("analyst".to_owned(), strings(&["read:*"])),
            ("admin".to_owned(), strings(&["*"])),
        ]))
    }

    fn call<'a>(tool: &'a str, arguments: Option<&'a Value>) -> Call<'a> {
        Call {
            method: "tools/call",
            target: Target::Tool(tool),
            arguments,
        }
    }

    fn policy(rules: Vec<RuleConfig>) -> RoutePolicy {
        RoutePolicy::new(&rules, DefaultPolicy::Deny, false).unwrap()
    }

    #[test]
    fn task_methods_pass_but_task_listing_falls_to_the_default() {
        let method = |m| Call {
            method: m,
            target: Target::None,
            arguments: None,
        };
        let alice = principal(&[], &[]);
        let p = policy(vec![allow_tools(&["report"])]);
        for m in ["tasks/get", "tasks/result", "tasks/cancel", "tasks/update"] {
            assert_eq!(
                p.decide(&roles(), &alice, &method(m)),
                Decision::Allow,
                "{m}"
            );
        }
        assert_eq!(
            p.decide(&roles(), &alice, &method("tasks/list")),
            Decision::Deny
        );
        let listing = policy(vec![RuleConfig {
            methods: Some(strings(&["tasks/list"])),
            ..RuleConfig::default()
        }]);
        assert_eq!(
            listing.decide(&roles(), &alice, &method("tasks/list")),
            Decision::Allow
        );
    }

    #[test]
    fn methods_the_gateway_does_not_know_fall_to_the_default() {
        let method = |m| Call {
            method: m,
            target: Target::None,
            arguments: None,
        };
        let alice = principal(&[], &[]);
        let deny = policy(vec![allow_tools(&["report"])]);
        for m in ["x-acme/sync", "tools/delete", "sampling/createMessage"] {
            assert_eq!(
                deny.decide(&roles(), &alice, &method(m)),
                Decision::Deny,
                "{m}"
            );
        }
        // MCP's own methods that name nothing pass; the session's own always do.
        for m in [
            "tools/list",
            "prompts/list",
            "resources/templates/list",
            "logging/setLevel",
            "initialize",
            "ping",
            "server/discover",
            "notifications/initialized",
            "notifications/acme/ready",
        ] {
            assert_eq!(
                deny.decide(&roles(), &alice, &method(m)),
                Decision::Allow,
                "{m}"
            );
        }
        // A rule that names a vendor method lets it through.
        let named = policy(vec![RuleConfig {
            methods: Some(strings(&["x-acme/sync"])),
            ..RuleConfig::default()
        }]);
        assert_eq!(
            named.decide(&roles(), &alice, &method("x-acme/sync")),
            Decision::Allow
        );
        assert_eq!(
            named.decide(&roles(), &alice, &method("x-acme/other")),
            Decision::Deny
        );
        // Under default allow, unknown methods pass.
        let open =
            RoutePolicy::new(&[allow_tools(&["report"])], DefaultPolicy::Allow, false).unwrap();
        assert_eq!(
            open.decide(&roles(), &alice, &method("x-acme/sync")),
            Decision::Allow
        );
        // A rule may not name a lookalike of an MCP method.
        let lookalike = RoutePolicy::new(
            &[RuleConfig {
                methods: Some(strings(&["Tools/List"])),
                ..RuleConfig::default()
            }],
            DefaultPolicy::Deny,
            false,
        )
        .unwrap_err();
        assert_eq!(lookalike[0].1, "methods[0]");
        assert!(lookalike[0].2.contains("`tools/list`"), "{lookalike:?}");
    }

    #[test]
    fn default_deny_and_globs() {
        let p = policy(vec![RuleConfig {
            roles: strings(&["analyst"]),
            ..allow_tools(&["query_*", "describe"])
        }]);
        let analyst = principal(&["analyst"], &[]);
        let nobody = principal(&[], &[]);
        assert_eq!(
            p.decide(&roles(), &analyst, &call("query_orders", None)),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&roles(), &analyst, &call("describe", None)),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&roles(), &analyst, &call("delete_orders", None)),
            Decision::Deny
        );
        assert_eq!(
            p.decide(&roles(), &nobody, &call("query_orders", None)),
            Decision::Deny
        );
        // Methods that name nothing are not judged; the session's own never are.
        for method in [
            "tools/list",
            "initialize",
            "ping",
            "notifications/initialized",
        ] {
            let c = Call {
                method,
                target: Target::None,
                arguments: None,
            };
            assert_eq!(p.decide(&roles(), &nobody, &c), Decision::Allow, "{method}");
        }
    }

    #[test]
    fn deny_overrides_allow_whatever_the_order() {
        let deny = RuleConfig {
            effect: Effect::Deny,
            roles: strings(&["contractor"]),
            ..allow_tools(&["*_prod"])
        };
        let allow = allow_tools(&["*"]);
        for rules in [vec![deny.clone(), allow.clone()], vec![allow, deny]] {
            let p = policy(rules);
            let contractor = principal(&["contractor"], &[]);
            let employee = principal(&["employee"], &[]);
            assert_eq!(
                p.decide(&roles(), &contractor, &call("deploy_prod", None)),
                Decision::Deny
            );
            assert_eq!(
                p.decide(&roles(), &contractor, &call("deploy_dev", None)),
                Decision::Allow
            );
            assert_eq!(
                p.decide(&roles(), &employee, &call("deploy_prod", None)),
                Decision::Allow
            );
        }
    }

    #[test]
    fn permissions_come_from_roles_and_scopes_from_the_token() {
        let p = policy(vec![
            RuleConfig {
                require: strings(&["read:database"]),
                ..allow_tools(&["query"])
            },
            RuleConfig {
                scopes: strings(&["db:write"]),
                ..allow_tools(&["insert"])
            },
        ]);
        assert_eq!(
            p.decide(
                &roles(),
                &principal(&["analyst"], &[]),
                &call("query", None)
            ),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&roles(), &principal(&["admin"], &[]), &call("query", None)),
            Decision::Allow
        );
        assert_eq!(
            p.decide(
                &roles(),
                &principal(&["unknown-role"], &[]),
                &call("query", None)
            ),
            Decision::Deny
        );
        // A role is not a scope, and a scope is not a role.
        assert_eq!(
            p.decide(
                &roles(),
                &principal(&["db:write"], &[]),
                &call("insert", None)
            ),
            Decision::Deny
        );
        assert_eq!(
            p.decide(
                &roles(),
                &principal(&[], &["db:write"]),
                &call("insert", None)
            ),
            Decision::Allow
        );
        assert_eq!(
            p.decide(
                &roles(),
                &principal(&[], &["read:database"]),
                &call("query", None)
            ),
            Decision::Deny
        );
    }

    #[test]
    fn step_up_names_the_scopes_to_get() {
        let rules = vec![RuleConfig {
            scopes: strings(&["mcp:tools", "db:write"]),
            ..allow_tools(&["insert"])
        }];
        let with = RoutePolicy::new(&rules, DefaultPolicy::Deny, true).unwrap();
        let without = RoutePolicy::new(&rules, DefaultPolicy::Deny, false).unwrap();
        let narrow = principal(&[], &["mcp:tools"]);
        assert_eq!(
            with.decide(&roles(), &narrow, &call("insert", None)),
            Decision::NeedScopes(strings(&["mcp:tools", "db:write"]))
        );
        assert_eq!(
            without.decide(&roles(), &narrow, &call("insert", None)),
            Decision::Deny
        );
        // Listed with step-up (the client can get the scope), hidden without.
        assert!(with.lists(&roles(), &narrow, Kind::Tool, "insert"));
        assert!(!without.lists(&roles(), &narrow, Kind::Tool, "insert"));
    }

    #[test]
    fn argument_conditions_allow_and_deny() {
        let p = policy(vec![
            RuleConfig {
                when: vec![ConditionConfig {
                    argument: "/limit".into(),
                    max: Some(100.0),
                    ..ConditionConfig::default()
                }],
                ..allow_tools(&["query"])
            },
            allow_tools(&["read_file"]),
            RuleConfig {
                effect: Effect::Deny,
                when: vec![ConditionConfig {
                    argument: "/path".into(),
                    matches: Some("^/etc/".into()),
                    ..ConditionConfig::default()
                }],
                ..allow_tools(&["read_file"])
            },
        ]);
        let anyone = principal(&[], &[]);
        let small = json!({ "limit": 10 });
        let big = json!({ "limit": 1000 });
        assert_eq!(
            p.decide(&roles(), &anyone, &call("query", Some(&small))),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&roles(), &anyone, &call("query", Some(&big))),
            Decision::Deny
        );
        assert_eq!(
            p.decide(&roles(), &anyone, &call("query", None)),
            Decision::Deny
        );
        let passwd = json!({ "path": "/etc/passwd" });
        let notes = json!({ "path": "/home/a/notes.txt" });
        assert_eq!(
            p.decide(&roles(), &anyone, &call("read_file", Some(&passwd))),
            Decision::Deny
        );
        assert_eq!(
            p.decide(&roles(), &anyone, &call("read_file", Some(&notes))),
            Decision::Allow
        );
        // Both are listed: each can be called with some arguments.
        assert!(p.lists(&roles(), &anyone, Kind::Tool, "query"));
        assert!(p.lists(&roles(), &anyone, Kind::Tool, "read_file"));
        assert!(!p.lists(&roles(), &anyone, Kind::Tool, "other"));
    }

    #[test]
    fn numeric_strings_meet_numeric_conditions_in_deny_and_allow_rules() {
        let at_least = |bound: f64, max: bool| ConditionConfig {
            argument: "/amount".into(),
            min: (!max).then_some(bound),
            max: max.then_some(bound),
            ..ConditionConfig::default()
        };
        let p = policy(vec![
            allow_tools(&["pay"]),
            RuleConfig {
                effect: Effect::Deny,
                when: vec![at_least(1000.0, false)],
                ..allow_tools(&["pay"])
            },
            RuleConfig {
                when: vec![at_least(100.0, true)],
                ..allow_tools(&["refund"])
            },
        ]);
        let anyone = principal(&[], &[]);
        let decide = |tool, amount: Value| {
            let arguments = json!({ "amount": amount });
            p.decide(&roles(), &anyone, &call(tool, Some(&arguments)))
        };
        assert_eq!(decide("pay", json!(5000)), Decision::Deny);
        assert_eq!(decide("pay", json!("5000")), Decision::Deny);
        assert_eq!(decide("pay", json!("5e3")), Decision::Deny);
        assert_eq!(decide("pay", json!("50")), Decision::Allow);
        assert_eq!(decide("refund", json!("50")), Decision::Allow);
        assert_eq!(decide("refund", json!("500")), Decision::Deny);
        assert_eq!(decide("refund", json!("fifty")), Decision::Deny);
    }

    #[test]
    fn prompts_resources_completion_and_named_methods() {
        let p = policy(vec![
            RuleConfig {
                prompts: Some(strings(&["summarize"])),
                resources: Some(strings(&["file:///public/*"])),
                ..RuleConfig::default()
            },
            RuleConfig {
                effect: Effect::Deny,
                methods: Some(strings(&["resources/subscribe"])),
                ..RuleConfig::default()
            },
        ]);
        let anyone = principal(&[], &[]);
        let params = json!({ "name": "summarize", "arguments": {} });
        let get = Call::from_params("prompts/get", Some(&params));
        assert_eq!(get.target, Target::Prompt("summarize"));
        assert_eq!(p.decide(&roles(), &anyone, &get), Decision::Allow);
        let read = json!({ "uri": "file:///public/a.txt" });
        assert_eq!(
            p.decide(
                &roles(),
                &anyone,
                &Call::from_params("resources/read", Some(&read))
            ),
            Decision::Allow
        );
        // Explicitly named and denied, although the resource itself is allowed.
        assert_eq!(
            p.decide(
                &roles(),
                &anyone,
                &Call::from_params("resources/subscribe", Some(&read))
            ),
            Decision::Deny
        );
        let private = json!({ "uri": "file:///private/k" });
        assert_eq!(
            p.decide(
                &roles(),
                &anyone,
                &Call::from_params("resources/read", Some(&private))
            ),
            Decision::Deny
        );
        let complete = json!({ "ref": { "type": "ref/prompt", "name": "other" }, "argument": {} });
        assert_eq!(
            p.decide(
                &roles(),
                &anyone,
                &Call::from_params("completion/complete", Some(&complete))
            ),
            Decision::Deny
        );
        // A call without a readable name is judged, and with nothing to match, denied.
        let nameless = json!({ "arguments": {} });
        assert_eq!(
            p.decide(
                &roles(),
                &anyone,
                &Call::from_params("tools/call", Some(&nameless))
            ),
            Decision::Deny
        );
    }

    #[test]
    fn resource_uris_that_are_not_normal_cannot_be_judged() {
        let p = policy(vec![
            RuleConfig {
                resources: Some(strings(&["file:///public/*"])),
                ..RuleConfig::default()
            },
            RuleConfig {
                effect: Effect::Deny,
                resources: Some(strings(&["file:///secret/*"])),
                ..RuleConfig::default()
            },
        ]);
        let anyone = principal(&[], &[]);
        // Matched as written, these would be allowed (or escape the deny).
        for (method, params) in [
            (
                "resources/read",
                json!({ "uri": "file:///public/../secret/k" }),
            ),
            ("resources/read", json!({ "uri": "FILE:///secret/x" })),
            (
                "resources/subscribe",
                json!({ "uri": "file:///public/%2e%2e/secret/k" }),
            ),
            (
                "resources/unsubscribe",
                json!({ "uri": "file:///public/..%2Fsecret" }),
            ),
            (
                "completion/complete",
                json!({ "ref": { "type": "ref/resource", "uri": "file:///public/..\\secret" }, "argument": {} }),
            ),
        ] {
            let call = Call::from_params(method, Some(&params));
            let why = unjudgeable(&call).unwrap_or_else(|| panic!("{method} {params}"));
            assert!(why.starts_with("resource URI `"), "{why}");
            assert!(why.contains("is refused: "), "{why}");
        }
        let read = json!({ "uri": "file:///public/a.txt" });
        let call = Call::from_params("resources/read", Some(&read));
        assert_eq!(unjudgeable(&call), None);
        assert_eq!(p.decide(&roles(), &anyone, &call), Decision::Allow);
        // Tools and prompts are names, not URIs.
        assert_eq!(unjudgeable(&call_named("tools/call", "../x")), None);
        assert_eq!(unjudgeable(&call_named("prompts/get", "A%41")), None);
        // The message shows a bounded part of the URI.
        let long = json!({ "uri": format!("FILE:///{}", "a".repeat(500)) });
        let why = unjudgeable(&Call::from_params("resources/read", Some(&long))).unwrap();
        assert!(why.len() < 300, "{why}");
        // Lists are not refused: a listed URI is only shown.
        assert!(p.lists(&roles(), &anyone, Kind::Resource, "file:///public/../x"));
    }

    fn call_named<'a>(method: &'a str, name: &'a str) -> Call<'a> {
        let target = if method == "tools/call" {
            Target::Tool(name)
        } else {
            Target::Prompt(name)
        };
        Call {
            method,
            target,
            arguments: None,
        }
    }

    #[test]
    fn listened_resources_are_judged_as_subscriptions() {
        let listen = |notifications: Value| json!({ "notifications": notifications });
        let params = listen(json!({
            "toolsListChanged": true,
            "resourceSubscriptions": ["file:///public/a", "file:///secret/k"]
        }));
        let uris = listened_resources("subscriptions/listen", Some(&params)).unwrap();
        assert_eq!(uris, ["file:///public/a", "file:///secret/k"]);
        // Other methods, and a listen without resources, name none.
        assert!(
            listened_resources("resources/subscribe", Some(&params))
                .unwrap()
                .is_empty()
        );
        for quiet in [
            listen(json!({ "toolsListChanged": true })),
            listen(json!({ "resourceSubscriptions": null })),
            listen(json!({ "resourceSubscriptions": [] })),
            json!({}),
        ] {
            assert!(
                listened_resources("subscriptions/listen", Some(&quiet))
                    .unwrap()
                    .is_empty(),
                "{quiet}"
            );
        }
        assert!(
            listened_resources("subscriptions/listen", None)
                .unwrap()
                .is_empty()
        );
        // Anything but a list of strings is refused, not skipped.
        for odd in [
            json!("file:///secret/k"),
            json!(["file:///public/a", 7]),
            json!({ "uri": "file:///secret/k" }),
            json!([["file:///secret/k"]]),
        ] {
            let params = listen(json!({ "resourceSubscriptions": odd }));
            assert_eq!(
                listened_resources("subscriptions/listen", Some(&params)),
                Err(NOT_A_URI_LIST),
                "{odd}"
            );
        }

        // Each URI is judged as resources/subscribe would be, rules naming that method
        // included.
        let p = policy(vec![
            RuleConfig {
                resources: Some(strings(&["file:///public/*", "file:///watched/*"])),
                ..RuleConfig::default()
            },
            RuleConfig {
                effect: Effect::Deny,
                methods: Some(strings(&["resources/subscribe"])),
                resources: Some(strings(&["file:///public/*"])),
                ..RuleConfig::default()
            },
        ]);
        let anyone = principal(&[], &[]);
        let decide = |uri| p.decide(&roles(), &anyone, &Call::subscribe(uri));
        assert_eq!(decide("file:///watched/a"), Decision::Allow);
        assert_eq!(decide("file:///public/a"), Decision::Deny);
        assert_eq!(decide("file:///secret/k"), Decision::Deny);
        assert_eq!(
            denial_message(&Call::subscribe("file:///secret/k")),
            "resource `file:///secret/k` is not allowed"
        );
        assert!(unjudgeable(&Call::subscribe("file:///watched/../secret/k")).is_some());
    }

    #[test]
    fn config_mistakes_are_reported_per_rule() {
        let rules = vec![
            RuleConfig {
                methods: Some(strings(&["tools/call", "initialize"])),
                ..RuleConfig::default()
            },
            RuleConfig {
                effect: Effect::Deny,
                scopes: strings(&["x"]),
                when: vec![ConditionConfig {
                    argument: "nope".into(),
                    ..ConditionConfig::default()
                }],
                ..RuleConfig::default()
            },
        ];
        let errors = RoutePolicy::new(&rules, DefaultPolicy::Deny, false).unwrap_err();
        let keys: Vec<(usize, &str)> = errors.iter().map(|(i, k, _)| (*i, k.as_str())).collect();
        assert_eq!(keys, [(0, "methods[1]"), (1, "when[0]"), (1, "scopes")]);
    }

    #[test]
    fn default_allow_is_denied_only_by_rules() {
        let p = RoutePolicy::new(
            &[RuleConfig {
                effect: Effect::Deny,
                ..allow_tools(&["danger"])
            }],
            DefaultPolicy::Allow,
            false,
        )
        .unwrap();
        let anyone = principal(&[], &[]);
        assert_eq!(
            p.decide(&roles(), &anyone, &call("safe", None)),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&roles(), &anyone, &call("danger", None)),
            Decision::Deny
        );
        assert!(!p.lists(&roles(), &anyone, Kind::Tool, "danger"));
        assert_eq!(
            RoutePolicy::allow_all().decide(&roles(), &anyone, &call("x", None)),
            Decision::Allow
        );
    }
}
