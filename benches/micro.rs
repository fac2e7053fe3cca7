//! Criterion micro-benchmarks of the pieces every proxied request runs through today:
//! header hygiene both ways, the JSON-RPC id peek, the `Host` and `Origin` checks; and of
//! the authentication groundwork: JWT verification per algorithm family and the
//! verified-token cache hit (goal: a warm-cache authentication in at most 2 µs); and the
//! incident controls' checks, revocations and kill switches (goal: ≤ 1 µs when none
//! applies).
//!
//! `cargo bench --bench micro` (add `-- <filter>` for one group). The end-to-end figures
//! that the performance goals are stated in come from `benches/e2e.rs`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use portcullis::auth::cache::{TokenKey, VerifiedTokenCache};
use portcullis::auth::jwt::{JwtVerifier, TrustedIssuer, VerifyKey};
use portcullis::edge::host::HostPolicy;
use portcullis::edge::origin::OriginPolicy;
use portcullis::mcp::jsonrpc;
use portcullis::mcp::sse::{SseDecoder, SseEvent, SseRewrite};
use portcullis::proxy::headers;

/// The allocator the `portcullis` binary ships with (`src/main.rs`): several of these
/// paths allocate (list answers of 100 KiB and more), so the figures are the product's
/// only with it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What a browser-based MCP client sends on a 2026-07-28 `tools/call`.
fn client_request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "mcp.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        ),
        ("accept", "application/json, text/event-stream"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("origin", "https://app.example.com"),
        ("referer", "https://app.example.com/chat"),
        (
            "authorization",
            "Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSJ9.c2ln",
        ),
        ("cookie", "session=abc; theme=dark"),
        ("connection", "keep-alive"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "query_orders"),
        ("mcp-param-region", "eu-west-1"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-forwarded-for", "203.0.113.7"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-site"),
    ] {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

/// What an rmcp upstream answers with, plus the hop-by-hop headers a proxy must drop.
fn upstream_response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", "412"),
        ("date", "Tue, 28 Jul 2026 10:00:00 GMT"),
        ("connection", "keep-alive, x-upstream-hop"),
        ("keep-alive", "timeout=60"),
        ("x-upstream-hop", "1"),
        ("cache-control", "no-cache"),
        ("mcp-session-id", "0f8e1c2a-5b7d-4e39-9a61-3c2d7b8e9f10"),
    ] {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

/// A `tools/call` of about 1 KiB, the id after the params as some clients write it.
fn request_body_1k() -> Vec<u8> {
    let filler = "lorem ipsum dolor sit amet ".repeat(34);
    format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"query_orders","arguments":{{"region":"eu-west-1","limit":50,"note":"{filler}"}},"_meta":{{"progressToken":"p-17"}}}},"id":"req-000042"}}"#
    )
    .into_bytes()
}

fn header_hygiene(c: &mut Criterion) {
    let mut group = c.benchmark_group("headers");
    let from = client_request_headers();
    let extra = [HeaderName::from_static("x-tenant")];
    group.bench_function("take_request_headers/20", |b| {
        b.iter_batched(
            || from.clone(),
            |from| {
                let mut out = HeaderMap::with_capacity(16);
                headers::take_request_headers(black_box(from), &extra, &mut out);
                out
            },
            BatchSize::SmallInput,
        );
    });
    let response = upstream_response_headers();
    group.bench_function("strip_hop_by_hop/8", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |h| headers::strip_hop_by_hop(black_box(h)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn jsonrpc_id(c: &mut Criterion) {
    let body = request_body_1k();
    c.bench_function(&format!("jsonrpc/request_id/{}B", body.len()), |b| {
        b.iter(|| jsonrpc::request_id(black_box(&body)));
    });
}

fn edge_checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge");
    let public = url::Url::parse("https://mcp.example.com").ok();
    let hosts = HostPolicy::new(&["alt.example.com:8443".to_owned()], public.as_ref(), false);
    group.bench_function("host_allows/public", |b| {
        b.iter(|| hosts.allows(black_box(Some("mcp.example.com"))));
    });
    let loopback = HostPolicy::new(&[], None, true);
    group.bench_function("host_allows/loopback", |b| {
        b.iter(|| loopback.allows(black_box(Some("127.0.0.1:8080"))));
    });

    let origins = OriginPolicy::new(
        &[
            "https://app.example.com".to_owned(),
            "http://localhost:6274".to_owned(),
        ],
        "https",
    );
    let listed = HeaderValue::from_static("https://app.example.com");
    let same = HeaderValue::from_static("https://mcp.example.com");
    group.bench_function("origin_allows/absent", |b| {
        b.iter(|| origins.allows(black_box(None), black_box(Some("mcp.example.com"))));
    });
    group.bench_function("origin_allows/listed", |b| {
        b.iter(|| origins.allows(black_box(Some(&listed)), black_box(Some("mcp.example.com"))));
    });
    group.bench_function("origin_allows/same_origin", |b| {
        b.iter(|| origins.allows(black_box(Some(&same)), black_box(Some("mcp.example.com"))));
    });
    group.finish();
}

const ISSUER: &str = "https://auth.example.com/realms/portcullis";
const AUDIENCE: &str = "https://mcp.example.com/tools/mcp";

/// Claims of the size an identity provider issues (Keycloak-like, about 600 bytes).
fn bench_claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "3f1c2a9e-7b4d-4c61-9e0a-5d8f2b7c1e43",
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "jti": "8d0b5a1e-2c3f-4e7a-b9d6-1f4e8c2a7b90",
        "azp": "mcp-inspector",
        "scope": "openid profile email mcp:tools mcp:resources",
        "email": "alice@example.com",
        "preferred_username": "alice",
        "realm_access": { "roles": ["analyst", "default-roles-portcullis"] },
        "resource_access": { "mcp-gateway": { "roles": ["tools:read", "tools:call"] } },
    })
}

/// A signing key and the verifier that trusts its public half, for one algorithm.
fn key_pair(alg: Algorithm) -> Option<(EncodingKey, DecodingKey)> {
    let rcgen_pair = |a: &'static rcgen::SignatureAlgorithm| rcgen::KeyPair::generate_for(a).ok();
    match alg {
        Algorithm::HS256 => {
            let secret = b"0123456789abcdef0123456789abcdef-hs256-bench";
            Some((
                EncodingKey::from_secret(secret),
                DecodingKey::from_secret(secret),
            ))
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let pair = rcgen_pair(if alg == Algorithm::ES256 {
                &rcgen::PKCS_ECDSA_P256_SHA256
            } else {
                &rcgen::PKCS_ECDSA_P384_SHA384
            })?;
            Some((
                EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).ok()?,
                DecodingKey::from_ec_pem(pair.public_key_pem().as_bytes()).ok()?,
            ))
        }
        Algorithm::EdDSA => {
            let pair = rcgen_pair(&rcgen::PKCS_ED25519)?;
            Some((
                EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).ok()?,
                DecodingKey::from_ed_pem(pair.public_key_pem().as_bytes()).ok()?,
            ))
        }
        Algorithm::RS256 | Algorithm::PS256 => {
            use aws_lc_rs::encoding::AsDer as _;
            use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
            use aws_lc_rs::signature::KeyPair as _;
            use base64::Engine as _;
            let pair = KeyPair::generate(KeySize::Rsa2048).ok()?;
            let pkcs8 = pair.as_der().ok()?;
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
            );
            let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            Some((
                EncodingKey::from_rsa_pem(pem.as_bytes()).ok()?,
                DecodingKey::from_rsa_raw_components(&public.n, &public.e),
            ))
        }
        _ => None,
    }
}

fn jwt_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_verify");
    for alg in [
        Algorithm::HS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::RS256,
        Algorithm::PS256,
    ] {
        let Some((encoding, decoding)) = key_pair(alg) else {
            eprintln!("jwt_verify: no {alg:?} key; skipped");
            continue;
        };
        let mut header = Header::new(alg);
        header.kid = Some("bench".into());
        let Ok(token) = jsonwebtoken::encode(&header, &bench_claims(), &encoding) else {
            eprintln!("jwt_verify: could not sign with {alg:?}; skipped");
            continue;
        };
        let verifier = JwtVerifier::new([TrustedIssuer {
            issuer: ISSUER.into(),
            algorithms: vec![alg],
            keys: vec![VerifyKey {
                kid: Some("bench".into()),
                alg: Some(alg),
                key: decoding,
            }],
            leeway_secs: 60,
            required_claims: vec!["sub".into()],
            ..TrustedIssuer::default()
        }]);
        if verifier.verify(&token, AUDIENCE).is_err() {
            eprintln!("jwt_verify: {alg:?} token does not verify; skipped");
            continue;
        }
        group.bench_function(format!("{alg:?}/{}B", token.len()), |b| {
            b.iter(|| verifier.verify(black_box(&token), black_box(AUDIENCE)));
        });
    }
    group.finish();
}

fn token_cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_cache");
    let Some((encoding, decoding)) = key_pair(Algorithm::ES256) else {
        return;
    };
    let header = Header::new(Algorithm::ES256);
    let Ok(token) = jsonwebtoken::encode(&header, &bench_claims(), &encoding) else {
        return;
    };
    let verifier = JwtVerifier::new([TrustedIssuer {
        issuer: ISSUER.into(),
        algorithms: vec![Algorithm::ES256],
        keys: vec![VerifyKey {
            kid: None,
            alg: None,
            key: decoding,
        }],
        leeway_secs: 60,
        required_claims: vec![],
        ..TrustedIssuer::default()
    }]);
    let Ok(verified) = verifier.verify(&token, AUDIENCE) else {
        return;
    };
    let cache = VerifiedTokenCache::new(100_000, Duration::from_secs(300));
    // A warm cache of 10 000 other callers plus ours.
    for i in 0..10_000 {
        cache.insert(
            TokenKey::new(AUDIENCE, &format!("{token}{i}")),
            Arc::new(verified.clone()),
            1,
        );
    }
    cache.insert(TokenKey::new(AUDIENCE, &token), Arc::new(verified), 1);
    let len = token.len();
    group.bench_function(format!("key/{len}B"), |b| {
        b.iter(|| TokenKey::new(black_box(AUDIENCE), black_box(&token)));
    });
    let key = TokenKey::new(AUDIENCE, &token);
    group.bench_function("lookup", |b| {
        b.iter(|| cache.get(black_box(&key), 1));
    });
    // What a request with a known token pays: hash, lookup, expiry and generation check.
    group.bench_function(format!("hit/{len}B"), |b| {
        b.iter(|| cache.get(&TokenKey::new(black_box(AUDIENCE), black_box(&token)), 1));
    });
    // The same token presented to another route: a miss, then a full verification.
    let other_route = "https://mcp.example.com/other/mcp";
    group.bench_function(format!("miss/{len}B"), |b| {
        b.iter(|| cache.get(&TokenKey::new(black_box(other_route), black_box(&token)), 1));
    });
    group.finish();
}

/// Authentication as a request pays for it, through the gateway's own `Authenticator` built from
/// a config: a JWT whose verification is cached (the goal: ≤ 2 µs), and an API key
/// checked against 10 configured hashes.
fn authenticate(c: &mut Criterion) {
    use portcullis::auth::{Authenticator, RouteAuth};
    let secret = "bench-hmac-secret-of-at-least-32-bytes!";
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\npublic_url = \"http://mcp.example.com\"\n\
         [[auth.issuers]]\nissuer = \"{ISSUER}\"\nalgorithms = [\"HS256\"]\nhmac_secret = \"{secret}\"\n\
         roles_claims = [\"roles\"]\n"
    );
    for i in 0..10 {
        text.push_str(&format!(
            "[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"key-{i}\"\nroles = [\"analyst\"]\n",
            portcullis::auth::hash_key(&format!("bench-api-key-{i}"))
        ));
    }
    text.push_str("[[routes]]\nname = \"tools\"\npath = \"/tools/mcp\"\nupstream = { url = \"http://127.0.0.1:9/mcp\" }\n");
    let env = portcullis::config::ProcessEnv {
        base_dir: std::env::temp_dir(),
    };
    let Ok(config) = portcullis::gateway::load_str(&text, &env) else {
        eprintln!("authenticate: bench config rejected; skipped");
        return;
    };
    let (Ok(auth), Some(route)) = (Authenticator::new(&config), config.routes.first()) else {
        eprintln!("authenticate: could not build the authenticator; skipped");
        return;
    };
    let Ok(route) = RouteAuth::new(&config, config.server.public_url.as_ref(), route) else {
        return;
    };
    let mut claims = bench_claims();
    claims["aud"] = serde_json::json!(route.audience);
    let Ok(token) = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    ) else {
        return;
    };
    let mut jwt_headers = client_request_headers();
    jwt_headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or(HeaderValue::from_static("")),
    );
    let mut key_headers = client_request_headers();
    key_headers.remove(http::header::AUTHORIZATION);
    key_headers.insert(
        HeaderName::from_static("x-api-key"),
        HeaderValue::from_static("bench-api-key-7"),
    );
    let run = |headers: &HeaderMap| {
        futures::executor::block_on(auth.authenticate(&route, headers, None)).is_ok()
    };
    if !run(&jwt_headers) || !run(&key_headers) {
        eprintln!("authenticate: the bench credentials are refused; skipped");
        return;
    }
    let mut group = c.benchmark_group("authenticate");
    group.bench_function(format!("jwt_cached/{}B", token.len()), |b| {
        b.iter(|| run(black_box(&jwt_headers)));
    });
    group.bench_function("api_key/10_keys", |b| {
        b.iter(|| run(black_box(&key_headers)));
    });
    group.finish();
}

/// Session binding and the answer rewrite for a handshake-era session: sealing the upstream's
/// session id on `initialize`, and opening the sealed id a client sends on every later request.
fn session_seal(c: &mut Criterion) {
    use portcullis::mcp::session::{IdKind, PrincipalHash, SessionKeys};
    let upstream_id = "0f8e1c2a-5b7d-4e39-9a61-3c2d7b8e9f10";
    let principal = PrincipalHash::of("jwt", Some(ISSUER), "3f1c2a9e-7b4d-4c61-9e0a-5d8f2b7c1e43");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let max_age = Duration::from_secs(24 * 3600);
    let (Ok(keys), Ok(rotated)) = (
        SessionKeys::new([[7; 32]]),
        SessionKeys::new([[8; 32], [7; 32]]),
    ) else {
        eprintln!("session_seal: could not build the keys; skipped");
        return;
    };
    let Ok(sealed) = keys.seal(IdKind::Session, "github", upstream_id, &principal, now) else {
        eprintln!("session_seal: sealing failed; skipped");
        return;
    };
    let mut group = c.benchmark_group("session_seal");
    group.bench_function(format!("seal/{}B", upstream_id.len()), |b| {
        b.iter(|| {
            keys.seal(
                IdKind::Session,
                black_box("github"),
                black_box(upstream_id),
                &principal,
                now,
            )
        });
    });
    group.bench_function(format!("open/{}B", sealed.len()), |b| {
        b.iter(|| {
            keys.open(
                IdKind::Session,
                black_box(&sealed),
                black_box("github"),
                &principal,
                now,
                max_age,
            )
        });
    });
    // During a rotation: the id was sealed with the key that is now second.
    group.bench_function("open/second_key", |b| {
        b.iter(|| {
            rotated.open(
                IdKind::Session,
                black_box(&sealed),
                black_box("github"),
                &principal,
                now,
                max_age,
            )
        });
    });
    // Another principal's id: authenticated, then refused as foreign.
    let intruder = PrincipalHash::of("api_key", None, "mallory");
    group.bench_function("open/foreign", |b| {
        b.iter(|| {
            keys.open(
                IdKind::Session,
                black_box(&sealed),
                black_box("github"),
                &intruder,
                now,
                max_age,
            )
        });
    });
    group.finish();
}

/// About 64 KiB of what a Streamable HTTP upstream sends on a long `tools/call`: progress
/// notifications, log messages, a keep-alive comment now and then, and the result.
fn sse_stream_64k() -> Vec<u8> {
    let mut out = Vec::with_capacity(70_000);
    let mut n = 0;
    while out.len() < 60 * 1024 {
        n += 1;
        let data = if n % 3 == 0 {
            format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/message","params":{{"level":"info","logger":"db","data":"scanned {n} partitions of the orders table"}}}}"#
            )
        } else {
            format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"p-17","progress":{n},"total":400}}}}"#
            )
        };
        out.extend_from_slice(
            format!("event: message\nid: 0f8e1c2a/{n}\ndata: {data}\n\n").as_bytes(),
        );
        if n % 25 == 0 {
            out.extend_from_slice(b": keep-alive\n\n");
        }
    }
    let rows = r#"[\"2026-07-28\",\"eu-west-1\",4711],"#.repeat(120);
    let result = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{rows}"}}]}}}}"#
    );
    out.extend_from_slice(
        format!("event: message\nid: 0f8e1c2a/{}\ndata: {result}\n\n", n + 1).as_bytes(),
    );
    out
}

/// Event streams passed through (list filtering is benched in `benches/policy.rs`).
fn sse_streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse");
    let stream = sse_stream_64k();
    let chunks: Vec<bytes::Bytes> = stream
        .chunks(1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let kib = stream.len() / 1024;
    group.bench_function(format!("sse_pass_through/{kib}KiB_in_1KiB_chunks"), |b| {
        b.iter(|| {
            let mut decoder = SseDecoder::new();
            let mut out: Vec<bytes::Bytes> = Vec::with_capacity(256);
            for chunk in &chunks {
                let _ = decoder.rewrite_chunk(chunk.clone(), &mut |_| None, &mut out);
            }
            out.extend(decoder.finish());
            out.len()
        });
    });
    // The same through the response body the proxy builds (frames polled one by one).
    group.bench_function(
        format!("sse_body_pass_through/{kib}KiB_in_1KiB_chunks"),
        |b| {
            b.iter(|| {
                let frames = chunks
                    .iter()
                    .cloned()
                    .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(c)));
                let upstream = http_body_util::StreamBody::new(futures::stream::iter(frames));
                let mut body = SseRewrite::new(upstream, |e: &SseEvent| {
                    black_box(e);
                    None
                });
                futures::executor::block_on(async {
                    use http_body_util::BodyExt as _;
                    let mut frames = 0;
                    while let Some(Ok(_)) = body.frame().await {
                        frames += 1;
                    }
                    frames
                })
            });
        },
    );
    group.finish();
}

/// What the incident controls cost each request: a revocation check and the kill-switch
/// checks (route, then tool) when none applies — with nothing revoked or off (the
/// common case), and with one revocation and one switch in force for someone else.
fn incident_checks(c: &mut Criterion) {
    use portcullis::auth::revocation::{Revocations, Revoked};
    use portcullis::policy::Kind;
    use portcullis::policy::switches::{Item, Switches};
    use portcullis::request::{AuthMethod, Principal};

    let mut principal = Principal::new("alice", AuthMethod::Jwt);
    principal.issuer = Some("https://issuer.example".into());
    principal.token_id = Some("0f3c5a9e-token".into());
    let (revocations, switches) = (Revocations::default(), Switches::default());
    let mut group = c.benchmark_group("incident");
    let check = |group: &mut criterion::BenchmarkGroup<'_, _>, name: &str| {
        group.bench_function(name, |b| {
            b.iter(|| {
                let revoked = revocations.covering(black_box(&principal));
                let route = switches.route_off(black_box("orders"));
                let tool = switches.item_off("orders", Kind::Tool, black_box("query_orders"));
                (revoked, route.is_some(), tool.is_some())
            });
        });
    };
    check(&mut group, "none_in_force");
    revocations.revoke(
        Revoked::Subject {
            subject: "mallory".into(),
            issuer: None,
        },
        None,
        String::new(),
        "oncall".into(),
    );
    switches.turn_off(
        "billing".into(),
        Some(Item::new(Kind::Tool, "delete_*")),
        None,
        String::new(),
        "oncall".into(),
    );
    check(&mut group, "one_each_for_others");
    group.finish();
}

/// A reload of a 50-route configuration (goal: ≤ 100 ms): the text loaded and checked,
/// the new gateway built over the running one (`Gateway::reload`, which carries over
/// what applies) and its request path; beside it, the loading and checking alone.
fn reload(c: &mut Criterion) {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\n\
         [rate_limits]\nper_ip = \"100/1s\"\nper_user = \"50/1s\"\n\
         [[auth.issuers]]\nissuer = \"https://issuer.example\"\nalgorithms = [\"HS256\"]\n\
         hmac_secret = \"bench-hmac-secret-of-at-least-32-bytes!\"\n",
    );
    for i in 0..20 {
        text.push_str(&format!(
            "[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"key-{i}\"\nroles = [\"analyst\"]\n",
            portcullis::auth::hash_key(&format!("bench-api-key-{i}"))
        ));
    }
    for i in 0..50 {
        text.push_str(&format!(
            "[[routes]]\nname = \"r{i}\"\npath = \"/r{i}/mcp\"\nauth = \"required\"\n\
             upstream = {{ url = \"http://127.0.0.1:{}/mcp\" }}\n\
             rate_limits = {{ per_route = \"1000/1s\", per_tool = [{{ tools = [\"delete_*\"], limit = \"5/1m\" }}] }}\n\
             [[routes.policy]]\nroles = [\"analyst\"]\ntools = [\"search_*\", \"get_*\"]\n\
             [[routes.policy]]\nroles = [\"admin\"]\ntools = [\"*\"]\nprompts = [\"*\"]\nresources = [\"*\"]\n",
            9000 + i
        ));
    }
    let env = portcullis::config::ProcessEnv {
        base_dir: std::env::temp_dir(),
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let _entered = runtime.enter();
    let config = match portcullis::gateway::load_str(&text, &env) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("reload: bench config rejected ({errors}); skipped");
            return;
        }
    };
    let Ok(running) = portcullis::Gateway::build(&config) else {
        eprintln!("reload: could not build the gateway; skipped");
        return;
    };
    let mut group = c.benchmark_group("reload");
    group.sample_size(20);
    group.bench_function("fifty_routes", |b| {
        b.iter(|| {
            let Ok(config) = portcullis::gateway::load_str(black_box(&text), &env) else {
                return;
            };
            if let Ok(gateway) = running.reload(&config) {
                black_box(portcullis::app(Arc::new(gateway)));
            }
        });
    });
    // What each request pays for reloads: the configuration serving now read through
    // the swap, against a clone of the request path held directly (as before reloads).
    let running = Arc::new(running);
    let live = portcullis::reload::Live::new(Arc::clone(&running), None);
    let held = portcullis::app(Arc::clone(&running));
    group.bench_function("per_request_live_app", |b| b.iter(|| black_box(live.app())));
    group.bench_function("per_request_held_app", |b| {
        b.iter(|| black_box(held.clone()))
    });
    // The part of it that is reading the file: loading and checking alone.
    group.bench_function("fifty_routes_load_only", |b| {
        b.iter(|| black_box(portcullis::gateway::load_str(black_box(&text), &env).is_ok()));
    });
    group.finish();
}

/// An upstream that answers every request after `delay` (none: at once, without any
/// I/O) with the same JSON answer: a call's small result, or a list of tools.
#[derive(Debug)]
struct Canned {
    answer: bytes::Bytes,
    delay: Duration,
}

impl Canned {
    /// A call's small result, at once: what a call costs the gateway's side of the bottom
    /// of the path.
    fn call_result() -> Self {
        Self {
            answer: bytes::Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}]}}"#,
            ),
            delay: Duration::ZERO,
        }
    }

    /// `tools/list` with `tools` tools of a realistic size (a description and an input
    /// schema of two properties each), after `delay`.
    fn tools(tools: usize, delay: Duration) -> Self {
        let tools: Vec<serde_json::Value> = (0..tools)
            .map(|i| {
                serde_json::json!({
                    "name": format!("tool_{i}"),
                    "description": format!("Does the {i}th thing to a repository, given its owner and name."),
                    "inputSchema": {
                        "type": "object",
                        "properties": {
                            "owner": {"type": "string", "description": "The repository's owner"},
                            "repo": {"type": "string", "description": "The repository's name"}
                        },
                        "required": ["owner", "repo"]
                    }
                })
            })
            .collect();
        let answer =
            serde_json::json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": tools}}).to_string();
        Self {
            answer: bytes::Bytes::from(answer),
            delay,
        }
    }
}

impl portcullis::upstream::Upstream for Canned {
    fn send(&self, _: http::request::Parts, _: bytes::Bytes) -> portcullis::upstream::Answered<'_> {
        Box::pin(async move {
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let mut response = http::Response::new(axum::body::Body::from(self.answer.clone()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        })
    }

    fn ready(
        &self,
        _: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async { true })
    }
}

/// Issue #24's goal: a merged `tools/list` over three upstreams costs no more than the
/// slowest upstream's own answer plus 1 ms. Both sides read the whole answer. Without
/// delays the difference is the merge's own work (three lists of 50 read, prefixed and
/// written as one, against one list of 150 passed on); with upstreams that answer after
/// 1, 2 and 3 ms, the merged list against the slowest one's alone shows that they are
/// asked at once and what waiting for them adds.
fn aggregate_lists(c: &mut Criterion) {
    use http_body_util::BodyExt;
    use portcullis::aggregate::{Aggregate, Member};
    use portcullis::upstream::Upstream;

    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("aggregate_lists: no runtime; skipped");
        return;
    };
    let member = |name: &str, tools: usize, delay_ms: u64| Member {
        name: name.to_owned(),
        prefix: name.to_owned(),
        list_timeout: Duration::from_secs(3),
        upstream: Arc::new(Canned::tools(tools, Duration::from_millis(delay_ms))),
    };
    let three = |delays: [u64; 3]| {
        Aggregate::new(
            "all",
            "__",
            vec![
                member("github", 50, delays[0]),
                member("files", 50, delays[1]),
                member("docs", 50, delays[2]),
            ],
            None,
        )
    };
    let body = bytes::Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#);
    let parts = || {
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = http::Uri::from_static("/all/mcp");
        *request.headers_mut() = client_request_headers();
        request.into_parts().0
    };
    let read = |upstream: &dyn Upstream| {
        runtime.block_on(async {
            let response = upstream.send(parts(), body.clone()).await;
            // A body that breaks off counts as read (it cannot: it is in memory).
            response
                .into_body()
                .collect()
                .await
                .map_or(0, |body| body.to_bytes().len())
        })
    };
    let mut group = c.benchmark_group("aggregate_lists");
    let alone = Canned::tools(150, Duration::ZERO);
    let merged = three([0, 0, 0]);
    group.bench_function("list_150_from_one_upstream", |b| b.iter(|| read(&alone)));
    group.bench_function("list_3x50_through_three", |b| b.iter(|| read(&merged)));
    let slowest = Canned::tools(50, Duration::from_millis(3));
    let delayed = three([1, 2, 3]);
    group.bench_function("list_slowest_alone_3ms", |b| b.iter(|| read(&slowest)));
    group.bench_function("list_through_three_1_2_3ms", |b| b.iter(|| read(&delayed)));
    group.finish();
}

/// Issue #24's goal: a call through a virtual server (three upstreams) adds at most 10 µs
/// of CPU over the same call on a route with one upstream. Both sides end at an upstream
/// that answers at once, so the difference is the virtual server's own work: reading the
/// call, finding the owner by its prefix, writing the body without it.
fn aggregate(c: &mut Criterion) {
    use portcullis::aggregate::{Aggregate, Member};
    use portcullis::upstream::Upstream;

    let member = |name: &str| Member {
        name: name.to_owned(),
        prefix: name.to_owned(),
        list_timeout: Duration::from_secs(3),
        upstream: Arc::new(Canned::call_result()),
    };
    let virtual_server = Aggregate::new(
        "all",
        "__",
        vec![member("github"), member("files"), member("docs")],
        None,
    );
    let text = "x".repeat(64);
    let body = |name: &str| {
        bytes::Bytes::from(
            serde_json::json!({
                "jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": name, "arguments": {"text": text}}
            })
            .to_string(),
        )
    };
    let (direct_body, virtual_body) = (body("echo"), body("docs__echo"));
    let direct = Canned::call_result();
    let parts = || {
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = http::Uri::from_static("/all/mcp");
        *request.headers_mut() = client_request_headers();
        request.into_parts().0
    };
    let mut group = c.benchmark_group("aggregate");
    group.bench_function("call_one_upstream", |b| {
        b.iter_batched(
            parts,
            |parts| futures::executor::block_on(direct.send(parts, direct_body.clone())),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("call_through_three", |b| {
        b.iter_batched(
            parts,
            |parts| futures::executor::block_on(virtual_server.send(parts, virtual_body.clone())),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(
    benches,
    aggregate,
    aggregate_lists,
    reload,
    incident_checks,
    header_hygiene,
    jsonrpc_id,
    edge_checks,
    jwt_verify,
    token_cache,
    authenticate,
    session_seal,
    sse_streams
);
criterion_main!(benches);
