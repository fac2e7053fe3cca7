//! Task ids bound to their owner, like session ids: the ids an upstream gives its tasks
//! (2025-11-25 tasks, and the 2026-07-28 `io.modelcontextprotocol/tasks` extension) reach
//! the client only sealed for the caller and route ([`SessionKeys::seal_stable`] with
//! [`IdKind::Task`]), and a request that names a task must present such an id: the
//! upstream gets its own id back only when the id was issued to this caller on this route.
//! Any other id (another caller's, another route's, forged, or a raw upstream id learned
//! some other way) is answered as the upstream answers an
//! unknown task, JSON-RPC -32602 "Task not found", and nothing reaches the upstream.
//!
//! # Where task ids are
//!
//! Tasks run both ways: a client asks the server to run a call as a task (the server owns
//! that id), and a server may ask the client to run a sampling or elicitation request as a
//! task (the client owns that id). Only ids the upstream owns are sealed and opened.
//!
//! Upstream → client ([`TaskBinding::seal_message`]):
//! - every response's `result.taskId` (a `Task`: `tasks/get`, `tasks/cancel`, and the
//!   2026-07-28 `CreateTaskResult`, which is flat), `result.task.taskId` (the 2025-11-25
//!   `CreateTaskResult`) and `result.tasks[].taskId` (`tasks/list`): responses answer the
//!   client's requests, so these are the upstream's tasks;
//! - `params.taskId` of `notifications/tasks/status`;
//! - `_meta["io.modelcontextprotocol/related-task"].taskId` in results, notifications and
//!   the upstream's own requests (an elicitation a task waits on) — but not in the
//!   upstream's `tasks/*` requests, which ask about the client's tasks and are left alone.
//!
//! Client → upstream ([`TaskBinding::open_request`], on the ids the parse located):
//! - `params.taskId` of `tasks/get`, `tasks/result`, `tasks/cancel` and `tasks/update`:
//!   must open, or the request is refused (a `taskId` that is not a string too);
//! - related-task `_meta` in anything the client sends: opened when it is a sealed id;
//!   refused when it is sealed but does not open for this caller; passed on when it is not
//!   a sealed id at all (the client's own task, answering the upstream's request).
//!
//! # Cost
//!
//! Most messages carry no task id. [`may_carry_task_id`] looks for the key's bytes in any
//! letter case (and for any `\u` escape, since a key can be spelled with one, and for the
//! characters an upstream may take for one of its letters: `ſ`, `K`, `ı`) and only then
//! is a message parsed. A client's message that spells `taskId` in another case where it
//! is read is refused before this ([`crate::mcp::message`]); the search finds it all the
//! same.
//!
//! # Stable ids
//!
//! A task's id comes back again and again — in every `tasks/get` answer, every status
//! notification, every related-task `_meta` — and clients match them against the id they
//! hold. So one task sealed for one caller is always the same string (a deterministic
//! seal, [`SessionKeys::seal_stable`]), on every instance with the same keys. It carries
//! no expiry: the upstream decides how long a task lives (its `ttl`), and the binding to
//! caller and route is what makes a leaked id useless to anyone else. A rotation of the
//! sealing key changes the string for tasks sealed afterwards; ids sealed before keep
//! opening while the old key is configured.

use std::ops::Range;
use std::sync::{Arc, LazyLock};

use aho_corasick::AhoCorasick;
use serde_json::{Map, Value};

use std::time::Duration;

use super::message::{McpRequest, TaskIdPlace};
use super::session::{IdKind, OpenError, PrincipalHash, SealError, SessionKeys};
use crate::request::Principal;

/// The `_meta` key that ties a message to a task.
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// What a client is told for a task id it may not use: what an upstream says for a task
/// it does not know (the 2025-11-25 spec's own example), so the two cannot be told apart.
pub const TASK_NOT_FOUND: &str = "Failed to retrieve task: Task not found";

/// `true` unless `json` certainly carries no `taskId` member, in any letter case: it has
/// neither the key's bytes in any ASCII case, nor any `\u` escape, nor a character that
/// a lenient reader takes for one of the key's letters.
pub fn may_carry_task_id(json: &[u8]) -> bool {
    static TASK_ID: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| searcher("taskid"));
    found(&TASK_ID, json)
}

/// `true` unless the request in `json` certainly has nothing to do with tasks, so that its
/// answer certainly carries no task id: no `task` anywhere, in any letter case (a `tasks/*`
/// method, a `task` parameter, related-task `_meta`, the tasks extension among the
/// client's capabilities), no `\u` escape and none of the characters a lenient reader
/// takes for `s` or `k`.
pub fn may_concern_tasks(json: &[u8]) -> bool {
    static TASK: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| searcher("task"));
    found(&TASK, json)
}

/// A search for `word` (ASCII letters) in any ASCII case, for any `\u` escape (which may
/// spell any key) and for the characters that Go or C# readers match with an ASCII
/// letter regardless of case: `ſ` (s), `K` (Kelvin sign, k) and `ı` (dotless i).
fn searcher(word: &str) -> Option<AhoCorasick> {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build([word, "\\u", "\u{17f}", "\u{212a}", "\u{131}"])
        .ok()
}

/// Whether `search` finds anything in `json`; `true` if there is no search (it could not
/// be built), so that nothing is ever missed.
fn found(search: &Option<AhoCorasick>, json: &[u8]) -> bool {
    search.as_ref().is_none_or(|search| search.is_match(json))
}

/// Methods whose `params.taskId` names a task of the server they are sent to.
fn names_receivers_task(method: &str) -> bool {
    matches!(
        method,
        "tasks/get" | "tasks/result" | "tasks/cancel" | "tasks/update"
    )
}

/// Why a client's message is refused: it names a task that is not the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// For logs and metrics.
    pub reason: &'static str,
}

/// A client's body with the sealed task ids it named opened for the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub body: Vec<u8>,
    /// The task id a single `tasks/*` request names, which its `Mcp-Name` mirrors.
    pub name: Option<String>,
}

/// An upstream task id that could not be sealed (too long, or no randomness): the
/// message cannot be forwarded.
#[derive(Debug, thiserror::Error)]
#[error("an upstream task id could not be sealed: {0}")]
pub struct Unsealable(#[from] SealError);

/// Seals and opens task ids for one caller on one route. Most requests carry no task id,
/// so the caller's hash is computed when first needed.
#[derive(Clone)]
pub struct TaskBinding {
    keys: Arc<SessionKeys>,
    route: Arc<str>,
    principal: Arc<Principal>,
    hashed: std::sync::OnceLock<PrincipalHash>,
}

impl std::fmt::Debug for TaskBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskBinding")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl TaskBinding {
    pub fn new(keys: Arc<SessionKeys>, route: Arc<str>, principal: Arc<Principal>) -> Self {
        Self {
            keys,
            route,
            principal,
            hashed: std::sync::OnceLock::new(),
        }
    }

    fn caller(&self) -> &PrincipalHash {
        self.hashed
            .get_or_init(|| PrincipalHash::from(self.principal.as_ref()))
    }

    /// Seals the upstream's task ids in `message` (one JSON-RPC message or a batch of
    /// them) in place; `true` if any changed.
    pub fn seal_message(&self, message: &mut Value) -> Result<bool, Unsealable> {
        upstream_task_ids(message, &mut |id: &mut String| {
            *id = self
                .keys
                .seal_stable(IdKind::Task, &self.route, id, self.caller())?;
            Ok::<(), Unsealable>(())
        })
    }

    /// Opens the sealed task ids that the messages of `request`, parsed from `body`, name:
    /// `Ok(None)` when there is nothing to open, `Ok(Some)` with the body to forward
    /// instead (every byte but the ids as written), or `Err` with each refused message's
    /// index and why. A message is refused at its first id that does not open.
    pub fn open_request(
        &self,
        request: &McpRequest,
        body: &[u8],
    ) -> Result<Option<Opened>, Vec<(usize, Refused)>> {
        let mut opened: Vec<(&Range<usize>, String)> = Vec::new();
        let mut refused = Vec::new();
        let mut name = None;
        for (i, message) in request.messages.iter().enumerate() {
            let method = message.method.as_deref();
            let names_task = method.is_some_and(names_receivers_task);
            for at in message.task_ids() {
                let open = match (at.place, &at.id) {
                    (TaskIdPlace::Params, _) if !names_task => Ok(None),
                    (TaskIdPlace::Params, None) => Err(Refused { reason: "not_text" }),
                    (TaskIdPlace::Params, Some(sealed)) => self
                        .open(sealed)
                        .map(Some)
                        .map_err(|e| Refused { reason: e.as_str() }),
                    (TaskIdPlace::RelatedTask, None) => Ok(None),
                    (TaskIdPlace::RelatedTask, Some(id)) => self.open_related(id),
                };
                match open {
                    Ok(Some(id)) => {
                        // 2026-07-28: `Mcp-Name` mirrors the task id of a single `tasks/*`.
                        if !request.batch
                            && at.place == TaskIdPlace::Params
                            && method.map(super::message::name_param) == Some("taskId")
                        {
                            name = Some(id.clone());
                        }
                        opened.push((&at.span, id));
                    }
                    Ok(None) => {}
                    Err(why) => {
                        refused.push((i, why));
                        break;
                    }
                }
            }
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        if opened.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(body.len());
        let mut from = 0;
        for (span, id) in opened {
            out.extend_from_slice(body.get(from..span.start).unwrap_or_default());
            // A JSON string: serde_json writes any text as one.
            out.extend_from_slice(Value::String(id).to_string().as_bytes());
            from = span.end;
        }
        out.extend_from_slice(body.get(from..).unwrap_or_default());
        Ok(Some(Opened { body: out, name }))
    }

    fn open(&self, sealed: &str) -> Result<String, OpenError> {
        // The clock is not read: stable ids do not expire.
        self.keys.open(
            IdKind::Task,
            sealed,
            &self.route,
            self.caller(),
            0,
            Duration::MAX,
        )
    }

    /// A related-task id the client sends: the upstream's task (sealed, opened to
    /// `Some`) or the client's own (anything that is not a sealed id: `None`).
    fn open_related(&self, id: &str) -> Result<Option<String>, Refused> {
        match self.open(id) {
            Ok(upstream_id) => Ok(Some(upstream_id)),
            Err(OpenError::Malformed | OpenError::UnsupportedVersion(_)) => Ok(None),
            Err(e) => Err(Refused { reason: e.as_str() }),
        }
    }
}

/// Hands `change` each task id of the upstream's in `message` (one JSON-RPC message or a
/// batch of them), the places listed in the module's documentation, to change in place;
/// `true` if there was any. What seals them for the client, and what a virtual server
/// marks with the upstream they came from.
pub fn upstream_task_ids<E>(
    message: &mut Value,
    change: &mut impl FnMut(&mut String) -> Result<(), E>,
) -> Result<bool, E> {
    fn one<E>(
        id: Option<&mut Value>,
        change: &mut impl FnMut(&mut String) -> Result<(), E>,
    ) -> Result<bool, E> {
        match id {
            Some(Value::String(id)) => change(id).map(|()| true),
            _ => Ok(false),
        }
    }
    if let Value::Array(batch) = message {
        let mut changed = false;
        for item in batch {
            changed |= upstream_task_ids(item, change)?;
        }
        return Ok(changed);
    }
    let Some(object) = message.as_object_mut() else {
        return Ok(false);
    };
    let mut changed = false;
    if let Some(result) = object.get_mut("result").and_then(Value::as_object_mut) {
        changed |= one(result.get_mut("taskId"), change)?;
        if let Some(task) = result.get_mut("task").and_then(Value::as_object_mut) {
            changed |= one(task.get_mut("taskId"), change)?;
        }
        if let Some(Value::Array(tasks)) = result.get_mut("tasks") {
            for task in tasks {
                changed |= one(task.get_mut("taskId"), change)?;
            }
        }
        changed |= one(related_task(result), change)?;
    }
    let method = object.get("method").and_then(Value::as_str);
    let upstreams_task_request =
        method.is_some_and(names_receivers_task) && object.contains_key("id");
    let status = method == Some("notifications/tasks/status");
    if let Some(params) = object.get_mut("params").and_then(Value::as_object_mut)
        && !upstreams_task_request
    {
        if status {
            changed |= one(params.get_mut("taskId"), change)?;
        }
        changed |= one(related_task(params), change)?;
    }
    Ok(changed)
}

/// `_meta["io.modelcontextprotocol/related-task"].taskId` of a `params` or `result`.
fn related_task(object: &mut Map<String, Value>) -> Option<&mut Value> {
    object
        .get_mut("_meta")?
        .get_mut(RELATED_TASK)?
        .get_mut("taskId")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn binding(route: &str, who: &str) -> TaskBinding {
        binding_with(&keys(), route, who)
    }

    fn keys() -> Arc<SessionKeys> {
        Arc::new(SessionKeys::new([[7; 32]]).unwrap())
    }

    fn binding_with(keys: &Arc<SessionKeys>, route: &str, who: &str) -> TaskBinding {
        let principal = Principal::new(who, crate::request::AuthMethod::ApiKey);
        TaskBinding::new(Arc::clone(keys), Arc::from(route), Arc::new(principal))
    }

    /// Opens `message` as the gateway opens a client's body: parsed, then its ids replaced
    /// in the bytes. `Ok(None)`: nothing to open.
    fn opened(b: &TaskBinding, message: &Value) -> Result<Option<Value>, Vec<(usize, Refused)>> {
        let body = message.to_string();
        let request = McpRequest::parse(body.as_bytes()).unwrap();
        let open = b.open_request(&request, body.as_bytes())?;
        Ok(open.map(|open| serde_json::from_slice(&open.body).unwrap()))
    }

    /// Seals `message` and returns it with the sealed ids found at `paths`.
    fn sealed_at(b: &TaskBinding, mut message: Value, paths: &[&str]) -> (Value, Vec<String>) {
        assert!(b.seal_message(&mut message).unwrap(), "{message}");
        let ids = paths
            .iter()
            .map(|p| {
                message
                    .pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("no id at {p}: {message}"))
                    .to_owned()
            })
            .collect();
        (message, ids)
    }

    #[test]
    fn every_place_an_upstream_puts_its_task_ids_is_sealed() {
        let b = binding("tools", "alice");
        let related = json!({ RELATED_TASK: { "taskId": "t-5" } });
        let cases = [
            // 2025-11-25 CreateTaskResult, nested.
            (
                json!({"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"t-1","status":"working"}}}),
                "/result/task/taskId",
                "t-1",
            ),
            // tasks/get, tasks/cancel, and the flat 2026-07-28 CreateTaskResult.
            (
                json!({"jsonrpc":"2.0","id":2,"result":{"resultType":"task","taskId":"t-2","status":"working"}}),
                "/result/taskId",
                "t-2",
            ),
            (
                json!({"jsonrpc":"2.0","id":3,"result":{"tasks":[{"taskId":"t-3"}],"nextCursor":"c"}}),
                "/result/tasks/0/taskId",
                "t-3",
            ),
            (
                json!({"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"t-4","status":"completed"}}),
                "/params/taskId",
                "t-4",
            ),
            // tasks/result: the underlying result, tied to its task.
            (
                json!({"jsonrpc":"2.0","id":4,"result":{"content":[],"_meta":related}}),
                "/result/_meta/io.modelcontextprotocol~1related-task/taskId",
                "t-5",
            ),
            // An elicitation a task of the upstream waits on.
            (
                json!({"jsonrpc":"2.0","id":"s1","method":"elicitation/create","params":{"message":"?","_meta":related}}),
                "/params/_meta/io.modelcontextprotocol~1related-task/taskId",
                "t-5",
            ),
        ];
        for (message, path, raw) in cases {
            let (sealed, ids) = sealed_at(&b, message.clone(), &[path]);
            assert_ne!(ids[0], raw, "{sealed}");
            assert!(
                !sealed.to_string().contains(&format!("\"{raw}\"")),
                "{sealed}"
            );
            // And the client's request naming it gets the upstream's id back.
            let get =
                json!({"jsonrpc":"2.0","id":9,"method":"tasks/get","params":{"taskId":ids[0]}});
            let get = opened(&b, &get).unwrap().unwrap();
            assert_eq!(get["params"]["taskId"], raw);
        }
        // The same task is the same id every time it comes back.
        let again = json!({"jsonrpc":"2.0","id":8,"result":{"taskId":"t-2","status":"completed"}});
        let (_, first) = sealed_at(&b, again.clone(), &["/result/taskId"]);
        let (_, second) = sealed_at(&b, again, &["/result/taskId"]);
        assert_eq!(first, second);
        // A batch: each message.
        let (_, ids) = sealed_at(
            &b,
            json!([
                {"jsonrpc":"2.0","id":1,"result":{"taskId":"a"}},
                {"jsonrpc":"2.0","id":2,"result":{"taskId":"b"}}
            ]),
            &["/0/result/taskId", "/1/result/taskId"],
        );
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn what_is_not_an_upstream_task_id_is_left_alone() {
        let b = binding("tools", "alice");
        for message in [
            // The upstream asking about the client's own task.
            json!({"jsonrpc":"2.0","id":"s2","method":"tasks/get","params":{"taskId":"client-1"}}),
            json!({"jsonrpc":"2.0","id":"s3","method":"tasks/result","params":{"taskId":"client-1","_meta":{RELATED_TASK:{"taskId":"client-1"}}}}),
            // Errors, tool results that merely mention a task id in their content.
            json!({"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"Task not found","data":{"taskId":"t"}}}),
            json!({"jsonrpc":"2.0","id":6,"result":{"structuredContent":{"taskId":"t"},"content":[]}}),
            json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"taskId":"t","progress":1}}),
            // Not a string: nothing to bind (and the client cannot name it back).
            json!({"jsonrpc":"2.0","id":7,"result":{"taskId":42}}),
        ] {
            let before = message.clone();
            let mut after = message;
            assert!(!b.seal_message(&mut after).unwrap(), "{after}");
            assert_eq!(after, before);
        }
    }

    #[test]
    fn a_task_id_works_only_for_the_caller_and_route_it_was_issued_to() {
        let keys = keys();
        let alice = binding_with(&keys, "tools", "alice");
        let bob = binding_with(&keys, "tools", "bob");
        let elsewhere = binding_with(&keys, "other", "alice");
        let (_, ids) = sealed_at(
            &alice,
            json!({"jsonrpc":"2.0","id":1,"result":{"taskId":"t-1"}}),
            &["/result/taskId"],
        );
        let sealed = ids[0].clone();
        for method in ["tasks/get", "tasks/result", "tasks/cancel", "tasks/update"] {
            let request =
                json!({"jsonrpc":"2.0","id":2,"method":method,"params":{"taskId":sealed}});
            let mine = opened(&alice, &request).unwrap().unwrap();
            assert_eq!(mine["params"]["taskId"], "t-1");
            for (who, intruder) in [("bob", &bob), ("another route", &elsewhere)] {
                assert_eq!(
                    opened(intruder, &request),
                    Err(vec![(0, Refused { reason: "foreign" })]),
                    "{who}: {method}"
                );
            }
        }
        // The raw upstream id, a forgery, a non-string: refused for tasks/* requests.
        let mut forged = sealed.clone();
        forged.replace_range(40..41, if &sealed[40..41] == "A" { "B" } else { "A" });
        for (id, reason) in [
            (json!("t-1"), "malformed"),
            (json!(forged), "forged"),
            (json!(17), "not_text"),
        ] {
            let request =
                json!({"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"taskId":id}});
            assert_eq!(opened(&alice, &request), Err(vec![(0, Refused { reason })]));
        }
        // A batch: the message with a foreign id is refused (and so the whole batch).
        let batch = json!([
            {"jsonrpc":"2.0","id":5,"method":"ping"},
            {"jsonrpc":"2.0","id":4,"method":"tasks/get","params":{"taskId":sealed}}
        ]);
        assert_eq!(
            opened(&bob, &batch),
            Err(vec![(1, Refused { reason: "foreign" })])
        );
    }

    #[test]
    fn related_task_meta_from_the_client_opens_or_is_the_clients_own() {
        let keys = keys();
        let alice = binding_with(&keys, "tools", "alice");
        let bob = binding_with(&keys, "tools", "bob");
        let (_, ids) = sealed_at(
            &alice,
            json!({"jsonrpc":"2.0","id":"s1","method":"elicitation/create","params":{"_meta":{RELATED_TASK:{"taskId":"t-9"}}}}),
            &["/params/_meta/io.modelcontextprotocol~1related-task/taskId"],
        );
        // The client's answer to that elicitation names the upstream's task again.
        let answer = json!({"jsonrpc":"2.0","id":"s1","result":{"action":"accept","_meta":{RELATED_TASK:{"taskId":ids[0]}}}});
        let open = opened(&alice, &answer).unwrap().unwrap();
        assert_eq!(
            open["result"]["_meta"][RELATED_TASK]["taskId"],
            json!("t-9")
        );
        assert_eq!(
            opened(&bob, &answer),
            Err(vec![(0, Refused { reason: "foreign" })])
        );
        // The client's own task (it is the receiver): not a sealed id, passed on.
        let own = json!({"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"c-1","_meta":{RELATED_TASK:{"taskId":"c-1"}}}});
        assert_eq!(opened(&alice, &own), Ok(None));
    }

    #[test]
    fn opening_replaces_only_the_ids_and_keeps_every_other_byte() {
        let b = binding("tools", "alice");
        let (_, ids) = sealed_at(
            &b,
            json!({"jsonrpc":"2.0","id":1,"result":{"taskId":"t/1 \"é\""}}),
            &["/result/taskId"],
        );
        let sealed = &ids[0];
        // The sealed id written with an escape, spacing, members in an odd order, text
        // the gateway never rewrites (an escaped é, a number as written).
        let escaped = format!("\\u{:04x}{}", sealed.as_bytes()[0], &sealed[1..]);
        let body = format!(
            "{{ \"params\" : {{\"_meta\":{{\"x\":\"caf\\u00e9\",\"{RELATED_TASK}\":{{\"taskId\":\"{sealed}\"}}}}, \"taskId\" :\"{escaped}\" , \"n\": 1.50}},\n\"method\":\"tasks/get\",\"id\":7,\"jsonrpc\":\"2.0\"}}"
        );
        let request = McpRequest::parse(body.as_bytes()).unwrap();
        let open = b.open_request(&request, body.as_bytes()).unwrap().unwrap();
        let expected = body
            .replace(&format!("\"{sealed}\""), r#""t/1 \"é\"""#)
            .replace(&format!("\"{escaped}\""), r#""t/1 \"é\"""#);
        assert_eq!(String::from_utf8(open.body).unwrap(), expected);
        assert_eq!(open.name.as_deref(), Some("t/1 \"é\""));
        // `Mcp-Name` mirrors `taskId` of a single tasks/get, tasks/update, tasks/cancel only.
        for (body, name) in [
            (
                json!({"jsonrpc":"2.0","id":1,"method":"tasks/result","params":{"taskId":sealed}}),
                None,
            ),
            (
                json!([{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":sealed}}]),
                None,
            ),
            (
                json!({"jsonrpc":"2.0","id":1,"method":"tasks/cancel","params":{"taskId":sealed}}),
                Some("t/1 \"é\""),
            ),
        ] {
            let text = body.to_string();
            let request = McpRequest::parse(text.as_bytes()).unwrap();
            let open = b.open_request(&request, text.as_bytes()).unwrap().unwrap();
            assert_eq!(open.name.as_deref(), name, "{body}");
        }
    }

    #[test]
    fn the_byte_checks_never_miss_a_key() {
        assert!(may_carry_task_id(br#"{"result":{"taskId":"x"}}"#));
        assert!(may_carry_task_id(br#"{"result":{"task\u0049d":"x"}}"#));
        assert!(!may_carry_task_id(br#"{"result":{"content":[]}}"#));
        assert!(may_concern_tasks(br#"{"method":"tasks/get"}"#));
        assert!(may_concern_tasks(br#"{"params":{"task":{"ttl":1}}}"#));
        assert!(may_concern_tasks(br#"{"params":{"t\u0061sk":{}}}"#));
        assert!(!may_concern_tasks(
            br#"{"method":"tools/call","params":{"name":"echo"}}"#
        ));
        // Any letter case, and the characters Go and C# readers take for ASCII letters.
        for spelt in [
            "TaskId",
            "TASKID",
            "taskid",
            "ta\u{17f}kId",
            "tas\u{212a}Id",
            "task\u{131}d",
        ] {
            let body = format!(r#"{{"params":{{"{spelt}":"x"}}}}"#);
            assert!(may_carry_task_id(body.as_bytes()), "{spelt}");
        }
        assert!(may_concern_tasks(br#"{"params":{"Task":{"ttl":1}}}"#));
        assert!(may_concern_tasks(
            "{\"params\":{\"ta\u{17f}k\":{}}}".as_bytes()
        ));
        assert!(!may_carry_task_id(
            "{\"result\":{\"content\":[\"caf\u{e9} \u{2014} task\"]}}".as_bytes()
        ));
    }
}
