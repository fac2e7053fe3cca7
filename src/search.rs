//! Tool search (see `docs/architecture.md` §1), for a route whose catalogue is too large
//! to show whole (`[routes.tool_search]`): its `tools/list` answers with two tools of the
//! gateway's instead of the catalogue — one that searches the tools the caller may call,
//! one that calls one of them by name.
//!
//! A layer above authorization, so that nothing here decides who may do what:
//! - `tools/list` goes down as it came (authorization, limits and the session still judge
//!   it); its answer's tools are replaced by the two.
//! - A search goes down as `tools/list` requests of the caller's, page by page, and is
//!   answered from what comes back: the catalogue as the layers below filter it for the
//!   caller, so a search never shows a tool the caller may not call.
//! - A call of the call tool goes down as the `tools/call` it names, which authorization,
//!   the tool limits, the guard and the audit record then see as that call.
//!
//! Tools called by their own names still work (authorization judges them as always).

use std::sync::Arc;

use axum::body::Body;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::body::Received;
use crate::error::{Rejection, jsonrpc_error_response, jsonrpc_result_response};
use crate::mcp::headers::{MCP_METHOD, MCP_NAME, encode_value, is_mcp_param};
use crate::mcp::jsonrpc::{RequestId, code};
use crate::mcp::message::{Message, ParseOptions};
use crate::request::{Answer, Layered, Next, answer};

/// How many pages of the catalogue one search reads at most.
const MAX_PAGES: usize = 100;

/// The largest answer of a list page the search reads.
const MAX_PAGE: usize = crate::mcp::answer::MAX_JSON_ANSWER;

/// A route's tool search, from its `[routes.tool_search]`.
#[derive(Debug)]
pub struct Settings {
    pub search_tool: String,
    pub call_tool: String,
    pub max_results: usize,
    /// The route's parse options, for the messages the layer sends down.
    pub parse: ParseOptions,
}

impl Settings {
    pub fn new(config: &crate::config::ToolSearchConfig, parse: ParseOptions) -> Self {
        Self {
            search_tool: config.search_tool.clone(),
            call_tool: config.call_tool.clone(),
            max_results: config.max_results,
            parse,
        }
    }

    /// What the layer does with `message`, if anything.
    fn part_in(&self, message: &Message) -> Option<Part> {
        match message.method.as_deref()? {
            "tools/list" => Some(Part::List),
            "tools/call" => {
                let name = message.params()?.get("name")?.as_str()?;
                if name == self.search_tool {
                    Some(Part::Search)
                } else if name == self.call_tool {
                    Some(Part::Call)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// The two tools the route lists.
    fn tools(&self) -> Value {
        let (search, call, max) = (&self.search_tool, &self.call_tool, self.max_results);
        json!([
            {
                "name": search,
                "title": "Search tools",
                "description": format!(
                    "Finds the tools you may call here by what they do. Give words that \
                     describe the task; the answer lists the matching tools (at most {max}), \
                     best first, each with its input schema. Call one with `{call}`."
                ),
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "query": {
                            "type": "string",
                            "description": "Words describing the task, e.g. `create issue`. Empty lists tools in their order."
                        },
                        "limit": {
                            "type": "integer", "minimum": 1, "maximum": max,
                            "description": format!("How many tools to show (default and most: {max}).")
                        }
                    },
                    "required": ["query"]
                },
                "outputSchema": {
                    "type": "object",
                    "properties": {
                        "tools": { "type": "array", "items": { "type": "object" } },
                        "matched": { "type": "integer" }
                    },
                    "required": ["tools", "matched"]
                },
                "annotations": { "readOnlyHint": true, "openWorldHint": false }
            },
            {
                "name": call,
                "title": "Call a tool",
                "description": format!(
                    "Calls a tool that `{search}` found, by its name, with its arguments."
                ),
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "The tool's name, as the search showed it." },
                        "arguments": { "type": "object", "description": "The tool's arguments, as its input schema says." }
                    },
                    "required": ["name"]
                }
            }
        ])
    }
}

/// What a message asks of the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    List,
    Search,
    Call,
}

/// The tool search layer (see the module's documentation).
#[derive(Debug, Clone)]
pub struct Search<S> {
    pub next: S,
    pub settings: Arc<Settings>,
}

impl<S: Next> Layered for Search<S> {
    fn answer(self: Arc<Self>, req: Request<Body>) -> Answer {
        let Some(received) = req.extensions().get::<Arc<Received>>().cloned() else {
            return self.next.clone().call(req);
        };
        let Some(parsed) = received.message() else {
            return self.next.clone().call(req);
        };
        let part = match parsed.messages.as_slice() {
            [message] if !parsed.batch => self
                .settings
                .part_in(message)
                .zip(message.id.clone())
                .map(|(part, id)| {
                    let params = message.params().and_then(Value::as_object).cloned();
                    (part, id, params.unwrap_or_default())
                }),
            messages => {
                if messages.iter().any(|m| self.settings.part_in(m).is_some()) {
                    return answer(
                        Rejection::InvalidMessage(
                            "on this endpoint, tools are listed, searched and called one request at a time, not in a batch".into(),
                        )
                        .into_response(None),
                    );
                }
                None
            }
        };
        let Some((part, id, params)) = part else {
            return self.next.clone().call(req);
        };
        Box::pin(async move {
            Ok(match part {
                Part::List => self.list(req, &id, &params).await,
                Part::Search => self.search(req, &id, &params).await,
                Part::Call => self.call(req, &id, params).await,
            })
        })
    }
}

impl<S: Next> Search<S> {
    /// `tools/list`: asked below as it came, answered with the two tools.
    async fn list(
        &self,
        req: Request<Body>,
        id: &RequestId,
        params: &Map<String, Value>,
    ) -> Response<Body> {
        if params.get("cursor").is_some_and(|c| !c.is_null()) {
            return jsonrpc_error_response(
                StatusCode::OK,
                Some(id),
                code::INVALID_PARAMS,
                "this endpoint's tool list has one page: there is no cursor to follow",
            );
        }
        let (answer, extensions) = match read(self.below(req).await).await {
            Ok(read) => read,
            Err(response) => return *response,
        };
        let Some(Value::Object(mut result)) = answer.get("result").cloned() else {
            // An error passes as it came.
            return with_extensions(json_body(&answer), extensions);
        };
        result.insert("tools".to_owned(), self.settings.tools());
        result.remove("nextCursor");
        with_extensions(
            jsonrpc_result_response(Some(id), &Value::Object(result)),
            extensions,
        )
    }

    /// The search tool: the caller's catalogue read below, page by page, and searched.
    async fn search(
        &self,
        req: Request<Body>,
        id: &RequestId,
        params: &Map<String, Value>,
    ) -> Response<Body> {
        let empty = Map::new();
        let arguments = params
            .get("arguments")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let query = match arguments.get("query") {
            None | Some(Value::Null) => "",
            Some(Value::String(query)) => query.as_str(),
            Some(_) => return tool_error(id, "`query` must be a string"),
        };
        let max = self.settings.max_results;
        let limit = match arguments.get("limit") {
            None | Some(Value::Null) => max,
            Some(limit) => match limit.as_u64().and_then(|l| usize::try_from(l).ok()) {
                Some(limit) if (1..=max).contains(&limit) => limit,
                _ => {
                    return tool_error(
                        id,
                        &format!("`limit` must be a whole number from 1 to {max}"),
                    );
                }
            },
        };
        let (parts, _) = req.into_parts();
        let (tools, extensions) = match self.catalogue(&parts, id, params).await {
            Ok(read) => read,
            Err(response) => return *response,
        };
        let (found, matched) = rank(&tools, query, limit);
        let found: Vec<Value> = found.into_iter().map(shown).collect();
        let structured = json!({ "tools": found, "matched": matched });
        let result = json!({
            "content": [{ "type": "text", "text": structured.to_string() }],
            "structuredContent": structured,
        });
        with_extensions(jsonrpc_result_response(Some(id), &result), extensions)
    }

    /// Every tool the caller is shown, from `tools/list` requests sent down with the
    /// request's credentials and session: `Err` is the answer to give instead (a refusal
    /// or an error of the list's, passed on as it came).
    async fn catalogue(
        &self,
        parts: &http::request::Parts,
        id: &RequestId,
        params: &Map<String, Value>,
    ) -> Result<(Vec<Value>, http::Extensions), Box<Response<Body>>> {
        // The call's `_meta` (a 2026-07-28 request's revision and client info) goes with
        // each list; its progress token does not.
        let meta = params.get("_meta").and_then(Value::as_object).map(|meta| {
            let mut meta = meta.clone();
            meta.remove("progressToken");
            meta
        });
        let mut tools = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let mut list = Map::new();
            if let Some(cursor) = cursor.take() {
                list.insert("cursor".to_owned(), cursor);
            }
            if let Some(meta) = &meta {
                list.insert("_meta".to_owned(), Value::Object(meta.clone()));
            }
            let request = self.sent_down(parts, id, "tools/list", list, None)?;
            let (answer, extensions) = read(self.below(request).await).await?;
            let Some(result) = answer.get("result") else {
                return Err(Box::new(with_extensions(json_body(&answer), extensions)));
            };
            if let Some(page) = result.get("tools").and_then(Value::as_array) {
                tools.extend(page.iter().cloned());
            }
            match result.get("nextCursor") {
                Some(Value::String(next)) if !next.is_empty() => {
                    cursor = Some(Value::String(next.clone()));
                }
                _ => return Ok((tools, extensions)),
            }
        }
        tracing::warn!(
            pages = MAX_PAGES,
            "A tool search read the most pages it may; the tools after them were not searched"
        );
        Ok((tools, http::Extensions::new()))
    }

    /// The call tool: the `tools/call` it names sent down in its place.
    async fn call(
        &self,
        req: Request<Body>,
        id: &RequestId,
        mut params: Map<String, Value>,
    ) -> Response<Body> {
        let empty = Map::new();
        let arguments = params
            .get("arguments")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let search = &self.settings.search_tool;
        let name = match arguments.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            _ => {
                return tool_error(
                    id,
                    &format!("`name` must be the name of a tool that `{search}` found"),
                );
            }
        };
        if name == self.settings.search_tool || name == self.settings.call_tool {
            return tool_error(
                id,
                &format!(
                    "call `{name}` itself, not through `{}`",
                    self.settings.call_tool
                ),
            );
        }
        let inner = match arguments.get("arguments") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::Object(inner)) => Value::Object(inner.clone()),
            Some(_) => return tool_error(id, "`arguments` must be an object"),
        };
        params.insert("name".to_owned(), Value::String(name.clone()));
        params.insert("arguments".to_owned(), inner);
        let (parts, _) = req.into_parts();
        let request = match self.sent_down(&parts, id, "tools/call", params, Some(&name)) {
            Ok(request) => request,
            Err(response) => return *response,
        };
        let received = request.extensions().get::<Arc<Received>>().cloned();
        let mut response = self.below(request).await;
        // The audit record shows the call that was made.
        if let Some(received) = received {
            response.extensions_mut().insert(received);
        }
        response
    }

    /// The layers below's answer to `req`.
    async fn below(&self, req: Request<Body>) -> Response<Body> {
        match self.next.clone().call(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// A request of the caller's carrying the message `method` with `params` (and the
    /// caller's `id`) instead of theirs: the same credentials, session and extensions,
    /// with the MCP headers of the new message (`name`: what `Mcp-Name` says of it).
    /// `Err` is the answer for a message the route's parse limits refuse.
    fn sent_down(
        &self,
        parts: &http::request::Parts,
        id: &RequestId,
        method: &'static str,
        params: Map<String, Value>,
        name: Option<&str>,
    ) -> Result<Request<Body>, Box<Response<Body>>> {
        let id_value: Value = serde_json::from_str(id.as_raw().get()).unwrap_or(Value::Null);
        let body = json!({ "jsonrpc": "2.0", "id": id_value, "method": method, "params": params });
        let received = Arc::new(Received::new(
            bytes::Bytes::from(body.to_string()),
            &self.settings.parse,
        ));
        if let Err(e) = &received.parsed {
            return Err(Box::new(jsonrpc_error_response(
                StatusCode::OK,
                Some(id),
                code::INVALID_PARAMS,
                &format!("the call could not be made: {e}"),
            )));
        }
        let mut request = Request::new(Body::from(received.bytes.clone()));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        let mut headers = http::HeaderMap::with_capacity(parts.headers.len());
        for (name, value) in &parts.headers {
            if !is_mcp_param(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(CONTENT_LENGTH, HeaderValue::from(received.bytes.len()));
        if headers.contains_key(MCP_METHOD) {
            headers.insert(MCP_METHOD, HeaderValue::from_static(method));
        }
        match name {
            Some(name) if headers.contains_key(MCP_NAME) => {
                headers.insert(MCP_NAME, encode_value(name));
            }
            Some(_) => {}
            None => {
                headers.remove(MCP_NAME);
            }
        }
        *request.headers_mut() = headers;
        *request.extensions_mut() = parts.extensions.clone();
        request.extensions_mut().insert(received);
        Ok(request)
    }
}

/// The JSON-RPC response in an answer from below, with the answer's extensions (what the
/// layers below learned, for the audit record); `Err` is an answer to pass on as it came
/// (a refusal), or the error for one that cannot be read.
async fn read(response: Response<Body>) -> Result<(Value, http::Extensions), Box<Response<Body>>> {
    if !response.status().is_success() {
        return Err(Box::new(response));
    }
    let (mut parts, body) = response.into_parts();
    let extensions = std::mem::take(&mut parts.extensions);
    match crate::mcp::answer::reply(Response::from_parts(parts, body), MAX_PAGE).await {
        Ok(answer) => Ok((answer, extensions)),
        Err(why) => {
            tracing::warn!(why, "A tool list read for a tool search could not be used");
            Err(Box::new(with_extensions(
                jsonrpc_error_response(
                    StatusCode::BAD_GATEWAY,
                    None,
                    code::UPSTREAM_UNAVAILABLE,
                    "the upstream's tool list could not be read",
                ),
                extensions,
            )))
        }
    }
}

/// The tools of `tools` that match `query` best, at most `limit` of them, with how many
/// match in all. Each word of the query counts 3 where it is in a tool's name and 1
/// where it is only in its title or description; ties keep the catalogue's order. An
/// empty query matches every tool.
fn rank<'t>(tools: &'t [Value], query: &str, limit: usize) -> (Vec<&'t Value>, usize) {
    let query = query.to_lowercase();
    let words: Vec<&str> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let text = |tool: &Value, key: &str| {
        tool.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase()
    };
    let mut scored: Vec<(usize, &Value)> = tools
        .iter()
        .filter_map(|tool| {
            if words.is_empty() {
                return Some((0, tool));
            }
            let name = text(tool, "name");
            let about = format!("{} {}", text(tool, "title"), text(tool, "description"));
            let score: usize = words
                .iter()
                .map(|w| {
                    if name.contains(w) {
                        3
                    } else if about.contains(w) {
                        1
                    } else {
                        0
                    }
                })
                .sum();
            (score > 0).then_some((score, tool))
        })
        .collect();
    scored.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    let matched = scored.len();
    (
        scored
            .into_iter()
            .take(limit)
            .map(|(_, tool)| tool)
            .collect(),
        matched,
    )
}

/// What a search shows of a tool: what a model needs to choose and call it.
fn shown(tool: &Value) -> Value {
    let mut shown = Map::new();
    for key in ["name", "title", "description", "inputSchema"] {
        if let Some(value) = tool.get(key) {
            shown.insert(key.to_owned(), value.clone());
        }
    }
    Value::Object(shown)
}

/// A tool's answer that it could not do what was asked (for the model to correct).
fn tool_error(id: &RequestId, message: &str) -> Response<Body> {
    jsonrpc_result_response(
        Some(id),
        &json!({ "content": [{ "type": "text", "text": message }], "isError": true }),
    )
}

fn json_body(message: &Value) -> Response<Body> {
    json_text(message.to_string())
}

fn json_text(text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn with_extensions(mut response: Response<Body>, extensions: http::Extensions) -> Response<Body> {
    let mut extensions = extensions;
    extensions.extend(std::mem::take(response.extensions_mut()));
    *response.extensions_mut() = extensions;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, description: &str) -> Value {
        json!({ "name": name, "description": description, "inputSchema": { "type": "object" } })
    }

    #[test]
    fn names_count_more_than_descriptions_and_ties_keep_their_order() {
        let tools = [
            tool("files__read", "Reads a file"),
            tool("github__create_issue", "Opens an issue in a repository"),
            tool("github__list_issues", "Lists the issues of a repository"),
            tool("files__write", "Writes a file"),
        ];
        let (found, matched) = rank(&tools, "Create an ISSUE", 10);
        let names: Vec<&str> = found.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["github__create_issue", "github__list_issues"]);
        assert_eq!(matched, 2);

        let (found, matched) = rank(&tools, "file", 1);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["name"], "files__read");
        assert_eq!(matched, 2);

        let (found, matched) = rank(&tools, "  ", 3);
        assert_eq!(found.len(), 3);
        assert_eq!(matched, 4);
        assert_eq!(found[0]["name"], "files__read");

        let (found, matched) = rank(&tools, "deploy", 3);
        assert!(found.is_empty());
        assert_eq!(matched, 0);
    }

    #[test]
    fn a_search_shows_what_a_model_needs_and_nothing_more() {
        let shown = shown(&json!({
            "name": "a", "title": "A", "description": "d", "inputSchema": {"type": "object"},
            "annotations": {"readOnlyHint": true}, "_meta": {"x": 1}, "icons": []
        }));
        assert_eq!(
            shown,
            json!({"name": "a", "title": "A", "description": "d", "inputSchema": {"type": "object"}})
        );
    }
}
