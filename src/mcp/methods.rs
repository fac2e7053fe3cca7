//! The MCP methods the gateway knows, of every protocol era it speaks (2024-11-05 …
//! 2026-07-28), and the lookalikes of them it refuses at parse time (the MCP parse).
//!
//! A method that differs from a known one only by letter case or by characters that look
//! alike (`TOOLS/CALL`, `tools/caII`, `t00ls/call`) is never a method of its own: an
//! upstream that matches methods loosely would run it as the real one, while the policy,
//! which matches exactly, would not see it. It is refused whatever the route's policy.
//! (Whitespace and characters beyond visible ASCII are refused by the envelope's own
//! check, [`super::message::valid_method`].)

/// Requests a client sends to a server.
pub const CLIENT_REQUESTS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "tasks/update",
];

/// Requests a server sends to a client: a client answers them, it does not send them.
const SERVER_REQUESTS: &[&str] = &["sampling/createMessage", "roots/list", "elicitation/create"];

/// Every notification of the protocol, either way.
const NOTIFICATIONS: &[&str] = &[
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/resources/updated",
    "notifications/resources/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/tasks/status",
    "notifications/elicitation/complete",
    "notifications/subscriptions/acknowledged",
];

/// Every notification method starts with this.
const NOTIFICATION_PREFIX: &str = "notifications/";

/// Whether `method` is a request a client may send to a server in some protocol era.
pub fn is_client_request(method: &str) -> bool {
    CLIENT_REQUESTS.contains(&method)
}

/// `method` as the protocol's own `'static` name when it is one of its methods (client
/// requests, server requests, notifications); `None` otherwise.
pub fn known(method: &str) -> Option<&'static str> {
    CLIENT_REQUESTS
        .iter()
        .chain(SERVER_REQUESTS)
        .chain(NOTIFICATIONS)
        .find(|known| **known == method)
        .copied()
}

/// The known method `method` is a lookalike of (equal to it once letter case and
/// lookalike characters are set aside, but not equal to it), or `None`. Notifications
/// count by their prefix, so `Notifications/anything` is a lookalike too.
pub fn lookalike_of(method: &str) -> Option<&'static str> {
    if known(method).is_some() {
        return None;
    }
    let folded = fold(method);
    if let Some(known) = CLIENT_REQUESTS
        .iter()
        .chain(SERVER_REQUESTS)
        .chain(NOTIFICATIONS)
        .find(|known| fold(known) == folded)
    {
        return Some(known);
    }
    let prefix = fold(NOTIFICATION_PREFIX);
    (folded.starts_with(&prefix) && !method.starts_with(NOTIFICATION_PREFIX))
        .then_some(NOTIFICATION_PREFIX)
}

/// `method` with letter case and lookalike characters set aside: lower case, and each
/// group of characters that look alike in common fonts written as one of them.
fn fold(method: &str) -> String {
    method
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            '0' => 'o',
            '1' | 'i' | '|' | '!' => 'l',
            '5' => 's',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_are_not_lookalikes() {
        for method in CLIENT_REQUESTS
            .iter()
            .chain(SERVER_REQUESTS)
            .chain(NOTIFICATIONS)
        {
            assert_eq!(lookalike_of(method), None, "{method}");
        }
        // Vendor methods and notifications of their own are not lookalikes either.
        for method in [
            "x-acme/sync",
            "vendor/tools/call",
            "notifications/acme/ready",
        ] {
            assert_eq!(lookalike_of(method), None, "{method}");
        }
    }

    #[test]
    fn case_and_lookalike_characters_are_caught() {
        for (method, known) in [
            ("TOOLS/CALL", "tools/call"),
            ("Tools/Call", "tools/call"),
            ("tools/caII", "tools/call"),
            ("t00ls/call", "tools/call"),
            ("tooIs/ca1l", "tools/call"),
            ("Initialize", "initialize"),
            ("RESOURCES/READ", "resources/read"),
            ("logging/setlevel", "logging/setLevel"),
            ("Notifications/Initialized", "notifications/initialized"),
            ("NOTIFICATIONS/acme", "notifications/"),
        ] {
            assert_eq!(lookalike_of(method), Some(known), "{method}");
        }
    }
}
