//! What one JSON-RPC call names: the method, the tool, prompt or resource it is about,
//! and its arguments. Authorization judges it, the audit record keeps it, per-tool limits
//! count it; all of them read it here, the one way.

use serde_json::Value;

/// What a call names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Tool(&'a str),
    Prompt(&'a str),
    Resource(&'a str),
    /// The method names nothing (or nothing the gateway can read).
    None,
}

impl<'a> Target<'a> {
    /// The name, or `""` when the call names nothing.
    pub fn name(&self) -> &str {
        self.named().unwrap_or("")
    }

    /// The tool, prompt or resource named, if any.
    pub fn named(&self) -> Option<&'a str> {
        match *self {
            Self::Tool(n) | Self::Prompt(n) | Self::Resource(n) => Some(n),
            Self::None => None,
        }
    }
}

/// One call to judge.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub method: &'a str,
    pub target: Target<'a>,
    /// `params.arguments` of `tools/call` and `prompts/get`.
    pub arguments: Option<&'a Value>,
}

impl<'a> Call<'a> {
    /// Reads method, target and arguments from a JSON-RPC request's `params`.
    pub fn from_params(method: &'a str, params: Option<&'a Value>) -> Self {
        let str_at = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_str);
        let target = match method {
            "tools/call" => str_at("name").map_or(Target::None, Target::Tool),
            "prompts/get" => str_at("name").map_or(Target::None, Target::Prompt),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                str_at("uri").map_or(Target::None, Target::Resource)
            }
            "completion/complete" => {
                let reference = params.and_then(|p| p.get("ref"));
                let field = |key: &str| reference.and_then(|r| r.get(key)).and_then(Value::as_str);
                match field("type") {
                    Some("ref/prompt") => field("name").map_or(Target::None, Target::Prompt),
                    Some("ref/resource") => field("uri").map_or(Target::None, Target::Resource),
                    _ => Target::None,
                }
            }
            _ => Target::None,
        };
        Self {
            method,
            target,
            arguments: params.and_then(|p| p.get("arguments")),
        }
    }

    /// `resources/subscribe` of `uri`: how each URI a `subscriptions/listen` names is judged.
    pub fn subscribe(uri: &'a str) -> Self {
        Self {
            method: "resources/subscribe",
            target: Target::Resource(uri),
            arguments: None,
        }
    }
}
