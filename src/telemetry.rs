//! Logging: tracing-subscriber, JSON (default when standard error is not a terminal) or
//! pretty, the level from the config unless `RUST_LOG` says otherwise. Every line logged
//! while a request is handled carries its `request_id` (from the span in `stack.rs`).

#[cfg(feature = "otlp")]
pub mod otlp;
pub mod trace;

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

use crate::config::{LogFormat, LoggingConfig, TracingConfig};

/// What has to live as long as the process logs: with `[tracing] otlp_endpoint` (and
/// the `otlp` feature), the exporter, which sends the spans still waiting when dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    /// Held for its `Drop`: the spans still waiting are sent then.
    _exporter: Option<otlp::Exporter>,
}

/// Installs the global subscriber. Fails only if one is already installed or the config
/// cannot be used.
pub fn init(config: &LoggingConfig, tracing: &TracingConfig) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .map_err(|e| {
            format!(
                "logging.level `{}` is not a valid filter: {e}",
                config.level
            )
        })?;
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = &tracing.otlp_endpoint {
        return otlp::init(endpoint, tracing, filter, json);
    }
    #[cfg(not(feature = "otlp"))]
    if tracing.otlp_endpoint.is_some() {
        return Err(
            "tracing.otlp_endpoint: this build cannot export traces (build with `--features otlp`)"
                .into(),
        );
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .fmt_fields(SpanFields)
            .try_init()
    } else {
        builder.with_target(false).with_ansi(colour()).try_init()
    };
    result.map_err(|e| e.to_string())?;
    Ok(Telemetry::default())
}

/// Whether pretty logs are coloured: only on a terminal (a file or a log collector would
/// get escape codes), and not when `NO_COLOR` is set (no-color.org).
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The fields of a span, as JSON: the same text as tracing-subscriber's [`JsonFields`],
/// written straight out when every field is a string, integer or boolean and the names
/// come in ascending order (the request span's lone `request_id`). `JsonFields` builds a
/// map of JSON values first, which made it the largest single cost of a proxied request;
/// anything else is still handed to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut direct = DirectJson::default();
        fields.record(&mut direct);
        match direct.finish() {
            Some(json) => writer.write_str(&json),
            None => JsonFields::new().format_fields(writer, fields),
        }
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // Merging into fields already written is rare (`Span::record`): leave it to
        // `JsonFields`, which reads the JSON back.
        let mut json = FormattedFields::<JsonFields>::new(std::mem::take(&mut current.fields));
        let result = JsonFields::new().add_fields(&mut json, fields);
        current.fields = json.fields;
        result
    }
}

/// Writes `{"name":value,...}` as fields are visited; gives up (`None`) on a field it does
/// not write exactly as `JsonFields` would, or on a name out of order.
#[derive(Default)]
struct DirectJson {
    json: Vec<u8>,
    last: Option<&'static str>,
    unsupported: bool,
}

impl DirectJson {
    fn field(&mut self, field: &Field, value: Scalar<'_>) {
        let name = field.name();
        if self.unsupported || self.last.is_some_and(|last| last >= name) {
            self.unsupported = true;
            return;
        }
        if self.last.is_none() {
            self.json.reserve(64);
            self.json.push(b'{');
        } else {
            self.json.push(b',');
        }
        self.last = Some(name);
        let written = self.string(name).and_then(|()| {
            self.json.push(b':');
            match value {
                Scalar::Str(text) => self.string(text),
                Scalar::I64(n) => serde_json::to_writer(&mut self.json, &n),
                Scalar::U64(n) => serde_json::to_writer(&mut self.json, &n),
                Scalar::Bool(b) => serde_json::to_writer(&mut self.json, &b),
            }
        });
        self.unsupported |= written.is_err();
    }

    /// A JSON string; serde_json escapes it if it needs escaping.
    fn string(&mut self, text: &str) -> serde_json::Result<()> {
        let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        if plain {
            self.json.push(b'"');
            self.json.extend_from_slice(text.as_bytes());
            self.json.push(b'"');
            Ok(())
        } else {
            serde_json::to_writer(&mut self.json, text)
        }
    }

    fn finish(mut self) -> Option<String> {
        if self.unsupported {
            return None;
        }
        if self.last.is_none() {
            self.json.push(b'{');
        }
        self.json.push(b'}');
        String::from_utf8(self.json).ok()
    }
}

/// The field values [`DirectJson`] writes itself.
enum Scalar<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
    Bool(bool),
}

impl Visit for DirectJson {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, Scalar::Str(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, Scalar::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, Scalar::U64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, Scalar::Bool(value));
    }

    /// Everything else (`Debug` and `Display` values, floats, errors, bytes) is left to
    /// `JsonFields`, which renames some fields and formats values in its own way.
    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {
        self.unsupported = true;
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::fmt::FormatFields;
    use tracing_subscriber::fmt::format::{JsonFields, Writer};

    use super::SpanFields;

    /// Formats the fields of one span, created under a subscriber that enables everything.
    fn fields_of(make: impl Fn() -> tracing::Span) -> (String, String) {
        #[derive(Default)]
        struct Capture(std::sync::Mutex<Vec<(String, String)>>);
        impl tracing::Subscriber for Capture {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                let mut ours = String::new();
                let mut theirs = String::new();
                SpanFields
                    .format_fields(Writer::new(&mut ours), attrs)
                    .unwrap();
                JsonFields::new()
                    .format_fields(Writer::new(&mut theirs), attrs)
                    .unwrap();
                self.0.lock().unwrap().push((ours, theirs));
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, _: &tracing::Event<'_>) {}
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        let capture = std::sync::Arc::new(Capture::default());
        tracing::subscriber::with_default(std::sync::Arc::clone(&capture), || drop(make()));
        capture.0.lock().unwrap().pop().unwrap()
    }

    #[test]
    fn span_fields_are_the_json_fields_text() {
        let cases: Vec<Box<dyn Fn() -> tracing::Span>> = vec![
            Box::new(|| {
                tracing::info_span!("request", request_id = "0af7651916cd43dd8448eb211c80319c")
            }),
            Box::new(|| {
                tracing::info_span!(
                    "s",
                    a = "quote \" back \\ nl \n esc \u{1b} é",
                    b = -3_i64,
                    c = 7_u64,
                    d = true
                )
            }),
            Box::new(|| tracing::info_span!("s", b = 1, a = 2)),
            Box::new(|| tracing::info_span!("s", a = 1.5, b = %"shown", c = ?"debug")),
            Box::new(|| tracing::info_span!("s", r#type = "raw")),
            Box::new(|| tracing::info_span!("empty")),
        ];
        for make in cases {
            let (ours, theirs) = fields_of(make);
            assert_eq!(ours, theirs);
        }
    }
}
