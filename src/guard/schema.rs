//! In authorization, `tools/call` arguments validated against the tool's `inputSchema`
//! before the call leaves the gateway, and in the answer rewrite, those schemas learned
//! from the `tools/list` answers passing through.
//!
//! Each route keeps a [`ToolCatalog`]: per tool, the schema the upstream last listed and
//! its compiled validator (compiled on the first call that needs it, then cached until
//! the tool's schema changes), plus the operator's overrides from the config, which a
//! call must satisfy as well. Schemas are compiled without any way to fetch a remote
//! `$ref` (no HTTP, no files): an upstream cannot make the gateway connect anywhere.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use jsonschema::Validator;
use serde_json::Value;

use crate::mcp::list::{ListItems, ListKind};

/// Compiles a JSON Schema (draft 2020-12 unless its `$schema` names draft-07 or another
/// draft the validator knows). `Err` says why in words, without the schema's values.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .build(schema)
        .map_err(|e| e.masked().to_string())
}

/// Why a call's arguments were refused: where, and what rule they broke. Never holds
/// the arguments' values (error bodies and logs must not carry them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON pointer into the arguments (`""` for the arguments as a whole).
    pub pointer: String,
    pub reason: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "the arguments"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.reason)
    }
}

/// The outcome of checking one call's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Valid,
    Invalid(Invalid),
    /// The catalog has never seen this tool listed (and has no override for it).
    Unknown,
    /// The tool's schema cannot be compiled; the reason says why.
    Unusable(String),
}

/// The last fetch of a route's tools.
#[derive(Debug, Default)]
pub struct FetchState {
    at: Option<std::time::Instant>,
    pub failed: Option<FetchFailure>,
}

/// How a fetch of the tools failed.
#[derive(Debug, Clone)]
pub struct FetchFailure {
    /// The upstream could not be reached, or did not answer in time: the answer a call
    /// gets instead (502 or 504), since it cannot be checked and must not be forwarded.
    pub unreachable: Option<crate::error::Rejection>,
    pub reason: String,
}

/// A call naming an unknown tool lists the upstream's tools again at most this often.
pub const REFETCH_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// One tool as last listed.
#[derive(Debug)]
struct Entry {
    /// Hash of the schema as listed, to tell a changed schema from the same one.
    fingerprint: u64,
    schema: Value,
    compiled: OnceLock<Result<Arc<Validator>, String>>,
}

impl Entry {
    fn validator(&self) -> Result<&Arc<Validator>, &String> {
        self.compiled
            .get_or_init(|| compile(&self.schema).map(Arc::new))
            .as_ref()
    }
}

/// A route's tools and their argument schemas.
#[derive(Debug)]
pub struct ToolCatalog {
    tools: RwLock<HashMap<Box<str>, Arc<Entry>>>,
    overrides: HashMap<String, Arc<Validator>>,
    /// The upstream announced a change (`notifications/tools/list_changed`) since the
    /// catalog last learned them, or it never has.
    stale: AtomicBool,
    /// Counts the changes learned: what was read at one generation is known at the same.
    generation: AtomicU64,
    /// One fetch of the upstream's tools at a time; when the last one started and how it
    /// failed, if it did.
    fetching: tokio::sync::Mutex<FetchState>,
}

impl ToolCatalog {
    /// A catalog with the operator's `overrides` (already checked by the config).
    pub fn new(overrides: &std::collections::BTreeMap<String, Value>) -> Self {
        let overrides = overrides
            .iter()
            .filter_map(|(name, schema)| Some((name.clone(), Arc::new(compile(schema).ok()?))))
            .collect();
        Self {
            tools: RwLock::default(),
            overrides,
            stale: AtomicBool::new(true),
            generation: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(FetchState::default()),
        }
    }

    /// Whether the caller should list the upstream's tools now: `Ok` with the turn to do
    /// it (held while fetching, so that concurrent calls wait for one fetch instead of
    /// each making their own; record the outcome in it), or `Err` with how the last fetch
    /// failed, if it did. Due when the catalog is stale, or when a call names a tool it
    /// does not know, and the last fetch is older than [`REFETCH_AFTER`] (a client naming
    /// unknown tools cannot make the gateway list them again and again) — or failed to
    /// reach the upstream: a call after that must not wait out the pause, since the
    /// upstream may be back and the call cannot be checked without a list. A call that
    /// waited while another fetched takes that fetch's outcome.
    pub async fn fetch_turn(
        &self,
        unknown_tool: bool,
    ) -> Result<tokio::sync::MutexGuard<'_, FetchState>, Option<FetchFailure>> {
        if !self.is_stale() && !unknown_tool {
            return Err(None);
        }
        let arrived = std::time::Instant::now();
        let mut turn = self.fetching.lock().await;
        if turn.at.is_some_and(|at| at >= arrived) {
            return Err(turn.failed.clone());
        }
        let recent = turn.at.is_some_and(|at| at.elapsed() < REFETCH_AFTER)
            && turn
                .failed
                .as_ref()
                .is_none_or(|failed| failed.unreachable.is_none());
        if !recent && (self.is_stale() || unknown_tool) {
            turn.at = Some(std::time::Instant::now());
            turn.failed = None;
            return Ok(turn);
        }
        // Another call fetched a moment ago: judge with what is known, and with how that
        // fetch went.
        Err(turn.failed.clone())
    }

    /// Whether the catalog should learn the tools again before judging a call: it never
    /// saw a list, or the upstream announced a change.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// The upstream listed the same tools as the catalog learned last.
    pub fn confirm_fresh(&self) {
        self.stale.store(false, Ordering::Release);
    }

    /// The upstream announced that its tools changed.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// How many times the catalog learned something new.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Each tool's schema fingerprint (tests).
    #[cfg(test)]
    pub(crate) fn fingerprints(&self) -> std::collections::BTreeMap<String, u64> {
        self.read()
            .iter()
            .map(|(name, entry)| (name.to_string(), entry.fingerprint))
            .collect()
    }

    /// Whether the catalog knows `tool`'s schema.
    pub fn knows(&self, tool: &str) -> bool {
        self.read().contains_key(tool)
    }

    /// Learns the tools of one `tools/list` result (`result.tools`). A page of a paginated
    /// list adds to what earlier pages taught. Returns how many tools it held.
    pub fn learn(&self, result: &Value) -> usize {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return 0;
        };
        let mut learned = 0;
        let mut changed: Vec<(Box<str>, Arc<Entry>)> = Vec::new();
        {
            let known = self.read();
            for tool in tools {
                let Some(name) = tool.get("name").and_then(Value::as_str) else {
                    continue;
                };
                learned += 1;
                // A tool without a schema accepts an object of anything (MCP requires one).
                let schema = tool
                    .get("inputSchema")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({ "type": "object" }));
                let fingerprint = fingerprint(&schema);
                if known
                    .get(name)
                    .is_some_and(|entry| entry.fingerprint == fingerprint)
                {
                    continue;
                }
                changed.push((
                    Box::from(name),
                    Arc::new(Entry {
                        fingerprint,
                        schema,
                        compiled: OnceLock::new(),
                    }),
                ));
            }
        }
        if !changed.is_empty() {
            let mut known = self.write();
            known.extend(changed);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.stale.store(false, Ordering::Release);
        learned
    }

    /// Checks the arguments of a call to `tool` (`None`: the call has none, checked as
    /// `{}`) against the upstream's schema and the operator's override.
    pub fn check(&self, tool: &str, arguments: Option<&Value>) -> Checked {
        let empty = Value::Object(serde_json::Map::new());
        let arguments = arguments.unwrap_or(&empty);
        let entry = self.read().get(tool).cloned();
        let extra = self.overrides.get(tool);
        if entry.is_none() && extra.is_none() {
            return Checked::Unknown;
        }
        if let Some(entry) = entry {
            match entry.validator() {
                Ok(validator) => {
                    if let Some(invalid) = first_error(validator, arguments) {
                        return Checked::Invalid(invalid);
                    }
                }
                Err(why) => return Checked::Unusable(why.clone()),
            }
        }
        if let Some(validator) = extra
            && let Some(invalid) = first_error(validator, arguments)
        {
            return Checked::Invalid(invalid);
        }
        Checked::Valid
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, Arc<Entry>>> {
        self.tools
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, Arc<Entry>>> {
        self.tools
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The first rule `arguments` break, in words that never quote their values.
fn first_error(validator: &Validator, arguments: &Value) -> Option<Invalid> {
    let error = validator.iter_errors(arguments).next()?;
    let reason: String = error.masked().to_string().chars().take(200).collect();
    Some(Invalid {
        pointer: error.instance_path().as_str().to_owned(),
        reason,
    })
}

/// A hash of a schema's content (the same schema listed twice has the same one).
fn fingerprint(schema: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hash_value(schema, &mut hasher);
    hasher.finish()
}

fn hash_value(value: &Value, hasher: &mut impl Hasher) {
    match value {
        Value::Null => 0u8.hash(hasher),
        Value::Bool(b) => (1u8, b).hash(hasher),
        Value::Number(n) => (2u8, n.to_string()).hash(hasher),
        Value::String(s) => (3u8, s).hash(hasher),
        Value::Array(items) => {
            (4u8, items.len()).hash(hasher);
            for item in items {
                hash_value(item, hasher);
            }
        }
        Value::Object(members) => {
            (5u8, members.len()).hash(hasher);
            // Member order does not change a schema.
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort_unstable();
            for key in keys {
                key.hash(hasher);
                if let Some(member) = members.get(key) {
                    hash_value(member, hasher);
                }
            }
        }
    }
}

/// The ids of the `tools/list` requests of one POST, to learn from their answers.
#[derive(Debug, Clone, Default)]
pub struct ToolListIds(HashSet<String>);

impl ToolListIds {
    /// The `tools/list` requests in `request`, if any.
    pub fn of(request: &crate::mcp::message::McpRequest) -> Option<Self> {
        let ids: HashSet<String> = request
            .calls()
            .filter(|(_, method)| *method == "tools/list")
            .filter_map(|(m, _)| Some(m.id.as_ref()?.as_raw().get().to_owned()))
            .collect();
        (!ids.is_empty()).then_some(Self(ids))
    }

    /// Learns from the answers in `bytes` (one JSON-RPC message or a batch) that answer
    /// these requests: schemas and pins (see [`crate::guard::RouteGuard::learn_list`]).
    pub fn learn_from(
        &self,
        bytes: &Bytes,
        guard: &super::RouteGuard,
        audit: &dyn crate::guard::Alerts,
    ) {
        if memchr::memmem::find(bytes, b"\"tools\"").is_none() {
            return;
        }
        // The same answer as last time (agents list again and again): nothing to learn.
        // Compared from the result on, since the ids differ; any identical suffix that
        // holds the result holds the same tools.
        let tail = memchr::memmem::find(bytes, b"\"result\"").and_then(|at| bytes.get(at..));
        if let Some(tail) = tail
            && guard.same_list_as_last(tail)
        {
            return;
        }
        // One response (the usual answer): read as the list filter reads it, and only the
        // tools that changed read into a tree.
        if let Some(read) = ListItems::read(ListKind::Tools, bytes) {
            let id = read
                .id
                .and_then(|id| serde_json::from_str::<Value>(id).ok());
            if let Some(items) = &read.items
                && id.is_some_and(|id| self.answered_by(&id))
            {
                guard.learn_answer(items, tail, audit);
            }
            return;
        }
        // Batches, and answers the list filter refuses (it does not forward them).
        let before = guard.generations();
        let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
            return;
        };
        for result in self.answers(&value) {
            guard.learn_list(result, audit);
        }
        guard.remember_list(before, tail);
    }

    /// Whether a response with `id` answers one of these requests.
    fn answered_by(&self, id: &Value) -> bool {
        self.0.contains(&id.to_string())
    }

    /// The results in `value` (one JSON-RPC message or a batch) answering these requests.
    fn answers<'v>(&self, value: &'v Value) -> Vec<&'v Value> {
        let messages: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        messages
            .into_iter()
            .filter(|m| m.get("id").is_some_and(|id| self.answered_by(id)))
            .filter_map(|m| m.get("result"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn catalog_with(tools: Value) -> ToolCatalog {
        let catalog = ToolCatalog::new(&std::collections::BTreeMap::new());
        assert!(catalog.is_stale());
        catalog.learn(&json!({ "tools": tools }));
        assert!(!catalog.is_stale());
        catalog
    }

    #[test]
    fn arguments_checked_against_the_listed_schema_without_quoting_them() {
        let catalog = catalog_with(json!([{
            "name": "write",
            "inputSchema": {
                "type": "object",
                "properties": { "path": { "type": "string", "maxLength": 8 }, "n": { "type": "integer" } },
                "required": ["path"],
                "additionalProperties": false
            }
        }]));
        assert_eq!(
            catalog.check("write", Some(&json!({ "path": "/a" }))),
            Checked::Valid
        );
        let Checked::Invalid(invalid) =
            catalog.check("write", Some(&json!({ "path": "/secret/very/long" })))
        else {
            panic!("a path too long passed");
        };
        assert_eq!(invalid.pointer, "/path");
        assert!(!invalid.reason.contains("secret"), "{invalid}");
        let Checked::Invalid(missing) = catalog.check("write", None) else {
            panic!("missing arguments passed");
        };
        assert_eq!(missing.pointer, "");
        assert!(missing.reason.contains("path"), "{missing}");
        assert!(matches!(
            catalog.check("write", Some(&json!({ "path": "/a", "n": "x" }))),
            Checked::Invalid(Invalid { pointer, .. }) if pointer == "/n"
        ));
        assert_eq!(catalog.check("other", None), Checked::Unknown);
    }

    #[test]
    fn overrides_tighten_and_a_changed_schema_is_learned_again() {
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert(
            "write".to_owned(),
            json!({ "properties": { "path": { "pattern": "^/srv/" } } }),
        );
        let catalog = ToolCatalog::new(&overrides);
        catalog
            .learn(&json!({ "tools": [{ "name": "write", "inputSchema": { "type": "object" } }] }));
        assert_eq!(
            catalog.check("write", Some(&json!({ "path": "/srv/a" }))),
            Checked::Valid
        );
        assert!(matches!(
            catalog.check("write", Some(&json!({ "path": "/etc/passwd" }))),
            Checked::Invalid(Invalid { pointer, .. }) if pointer == "/path"
        ));
        catalog.mark_stale();
        assert!(catalog.is_stale());
        catalog.learn(&json!({ "tools": [{ "name": "write", "inputSchema": {
            "type": "object", "properties": { "mode": { "enum": ["a", "w"] } } } }] }));
        assert!(matches!(
            catalog.check("write", Some(&json!({ "path": "/srv/a", "mode": "x" }))),
            Checked::Invalid(Invalid { pointer, .. }) if pointer == "/mode"
        ));
    }

    #[test]
    fn drafts_and_unusable_schemas() {
        let catalog = catalog_with(json!([
            { "name": "d7", "inputSchema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object", "properties": { "a": { "type": "array", "items": [{ "type": "string" }] } } } },
            { "name": "d2020", "inputSchema": {
                "type": "object", "properties": { "a": { "type": "array", "prefixItems": [{ "type": "string" }] } } } },
            { "name": "remote", "inputSchema": { "$ref": "http://127.0.0.1:9/schema.json" } },
        ]));
        assert!(matches!(
            catalog.check("d7", Some(&json!({ "a": [1] }))),
            Checked::Invalid(_)
        ));
        assert!(matches!(
            catalog.check("d2020", Some(&json!({ "a": [1] }))),
            Checked::Invalid(_)
        ));
        assert_eq!(
            catalog.check("d2020", Some(&json!({ "a": ["x"] }))),
            Checked::Valid
        );
        assert!(matches!(
            catalog.check("remote", None),
            Checked::Unusable(_)
        ));
    }

    #[test]
    fn answers_to_tools_list_requests_teach_the_catalog() {
        let request = crate::mcp::message::McpRequest::parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":"2","method":"ping"}]"#,
        )
        .unwrap();
        let ids = ToolListIds::of(&request).unwrap();
        let catalog = ToolCatalog::new(&std::collections::BTreeMap::new());
        let answers: Value = serde_json::from_str(
            r#"[{"jsonrpc":"2.0","id":"2","result":{"tools":[{"name":"no"}]}},{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"yes","inputSchema":{"type":"object"}}]}}]"#,
        )
        .unwrap();
        for result in ids.answers(&answers) {
            catalog.learn(result);
        }
        assert!(catalog.knows("yes"));
        assert!(!catalog.knows("no"));
    }
}
