//! e2e: the path-confusion catalogue. Every spelling of a protected path (percent-encodings of
//! each letter in either hex case, `//`, `/./`, `/x/../`, `;` parameters, case, trailing dots,
//! encoded slashes and backslashes, a raw backslash, overlong UTF-8, NUL, double encoding, ...)
//! sent over a raw socket to a sidecar whose routes have different rules, in front of an app
//! that resolves paths the way common frameworks do. For every spelling the answer is the
//! protected route's verdict or a 400, never the weaker route's; and whatever the app receives
//! is the path the sidecar matched, with nothing left for the app to resolve.

use crate::support::fake_idp::FakeIdp;
use crate::support::tokens::{access, claims, with};
use baton::config::Config;
use baton::http::{Body, full};
use baton::jwt::Algorithm;
use baton::jwt::keys::SigningKey;
use baton::jwt::unix_now;
use baton::server::{self, Limits};
use baton::sidecar::{self, Listeners, Running};
use http::{Request, Response};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AUD: &str = "service-b";

/// The app behind the sidecar: records the path it was given and answers with the resource it
/// resolves that path to ([`framework_view`]).
struct FrameworkApp {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<String>>>,
}

impl FrameworkApp {
    async fn start() -> FrameworkApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<String>>> = Arc::default();
        let r = received.clone();
        let handler = move |req: Request<hyper::body::Incoming>, _| {
            let path = req.uri().path().to_owned();
            r.lock().expect("lock").push(path.clone());
            async move { Response::<Body>::new(full(framework_view(&path))) }
        };
        tokio::spawn(server::serve(
            listener,
            Limits::default(),
            handler,
            std::future::pending(),
        ));
        FrameworkApp { addr, received }
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }
}

/// The resource an app resolves `path` to, taking every liberty the common frameworks take:
/// servlet containers cut `;` parameters off each segment; every escape is decoded once (Go's
/// `r.URL.Path`, WSGI's `PATH_INFO`), a decoded `%2F` splits the segment; `\` counts as `/`
/// (IIS); empty segments and dot-segments are resolved (Go's `path.Clean`, Tomcat).
fn framework_view(path: &str) -> String {
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for raw in path.split('/') {
        let raw = raw.split(';').next().unwrap_or("").as_bytes();
        let mut decoded = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            let escape = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (raw[i], escape) {
                (b'%', Some(b)) => {
                    decoded.push(b);
                    i += 3;
                }
                (b, _) => {
                    decoded.push(b);
                    i += 1;
                }
            }
        }
        for s in decoded.split(|&b| b == b'/' || b == b'\\') {
            match s {
                b"" | b"." => {}
                b".." => {
                    segments.pop();
                }
                _ => segments.push(s.to_vec()),
            }
        }
    }
    let joined: Vec<String> = segments
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    format!("/{}", joined.join("/"))
}

/// `path` with every escape decoded, nothing else changed.
fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], escape) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The route the app serves `resolved` (a [`framework_view`]) under, by the sidecar's table:
/// `admin` is matched without regard to case, as its app routes.
fn app_route(method: &str, resolved: &str) -> &'static str {
    let under = |prefix: &str, ci: bool| {
        let head = resolved.get(..prefix.len());
        let same = head.is_some_and(|h| {
            if ci {
                h.eq_ignore_ascii_case(prefix)
            } else {
                h == prefix
            }
        });
        same && matches!(resolved.as_bytes().get(prefix.len()), None | Some(b'/'))
    };
    if under("/healthz", false) {
        "health"
    } else if method == "POST" && under("/builds", false) {
        "builds"
    } else if under("/admin", true) {
        "admin"
    } else {
        "default"
    }
}

/// The verdict a spelling must get with the weak token.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// The acr-protected route's: 401 `insufficient_user_authentication`, `acr_values="mfa"`.
    Admin,
    /// The scope-protected route's: 403 `insufficient_scope`, `scope="update:builds"`.
    Builds,
    /// 400: the path has no canonical form.
    Bad,
    /// Forwarded on this route, the app given this path.
    Forwarded(&'static str, &'static str),
}

use Expect::{Admin, Bad, Builds, Forwarded};

/// The catalogue: method, request target as sent on the wire, and the verdict for a token that
/// passes the default route only (`acr=pwd`, no `update:builds`).
const CATALOGUE: &[(&str, &str, Expect)] = &[
    // The protected segment with each letter percent-encoded, in either hex case.
    ("GET", "/admin", Admin),
    ("GET", "/%61dmin", Admin),
    ("GET", "/a%64min", Admin),
    ("GET", "/ad%6Din", Admin),
    ("GET", "/ad%6din", Admin),
    ("GET", "/adm%69n", Admin),
    ("GET", "/admi%6E", Admin),
    ("GET", "/admi%6e", Admin),
    ("GET", "/%61%64%6d%69%6e", Admin),
    ("GET", "/%61dmin/users", Admin),
    // Case: this app routes /admin without regard to case, and so does the route.
    ("GET", "/ADMIN", Admin),
    ("GET", "/Admin/users", Admin),
    ("GET", "/%41DMIN", Admin),
    // Empty segments and dot-segments, raw and encoded, also through the public route.
    ("GET", "//admin", Admin),
    ("GET", "///admin//users", Admin),
    ("GET", "/./admin", Admin),
    ("GET", "/admin/./users", Admin),
    ("GET", "/x/../admin", Admin),
    ("GET", "/healthz/../admin", Admin),
    ("GET", "/healthz/%2e%2e/admin", Admin),
    ("GET", "/healthz/%2E%2E/admin", Admin),
    ("GET", "/healthz/.%2e/admin", Admin),
    ("GET", "/%2e/admin", Admin),
    ("GET", "/../../admin", Admin),
    ("GET", "/admin/", Admin),
    ("GET", "/admin?next=/healthz", Admin),
    ("GET", "http://b.example/admin", Admin),
    // `;` path parameters, raw and encoded.
    ("GET", "/admin;x=1", Bad),
    ("GET", "/admin;jsessionid=1/users", Bad),
    ("GET", "/healthz/..;/admin", Bad),
    ("GET", "/admin%3bx", Bad),
    // Trailing dots.
    ("GET", "/admin.", Bad),
    ("GET", "/admin%2e", Bad),
    ("GET", "/ADMIN./users", Bad),
    // Encoded slash and backslash, raw backslash.
    ("GET", "/healthz%2f..%2fadmin", Bad),
    ("GET", "/healthz%2F..%2Fadmin", Bad),
    ("GET", "/healthz%5c..%5cadmin", Bad),
    ("GET", "/healthz%5C..%5Cadmin", Bad),
    ("GET", "/healthz\\..\\admin", Bad),
    ("GET", "/x%2fadmin", Bad),
    // Overlong UTF-8 for `/` and `.`, invalid UTF-8, NUL and other control characters.
    ("GET", "/healthz%c0%af..%c0%afadmin", Bad),
    ("GET", "/%c0%ae%c0%ae/admin", Bad),
    ("GET", "/%e0%80%afadmin", Bad),
    ("GET", "/admin%ff", Bad),
    ("GET", "/admin%00", Bad),
    ("GET", "/%00/../admin", Bad),
    ("GET", "/admin%0d%0aX-Injected:%201", Bad),
    // Double encoding and malformed escapes.
    ("GET", "/%2561dmin", Bad),
    ("GET", "/healthz/%252e%252e/admin", Bad),
    ("GET", "/admin%", Bad),
    ("GET", "/%zz/../admin", Bad),
    // The scope-protected route, POST only, matched with regard to case.
    ("POST", "/builds", Builds),
    ("POST", "/%62uilds", Builds),
    ("POST", "/b%75ilds", Builds),
    ("POST", "//builds", Builds),
    ("POST", "/x/../builds", Builds),
    ("POST", "/builds/./7", Builds),
    ("POST", "/builds;x=1", Bad),
    ("POST", "/builds.", Bad),
    ("POST", "/%2562uilds", Bad),
    // Spellings of other resources: forwarded, the app given exactly the canonical path.
    ("POST", "/BUILDS", Forwarded("default", "/BUILDS")),
    ("GET", "/builds", Forwarded("default", "/builds")),
    ("GET", "/%68ealthz", Forwarded("health", "/healthz")),
    ("GET", "//healthz/", Forwarded("health", "/healthz/")),
    (
        "GET",
        "/administrator",
        Forwarded("default", "/administrator"),
    ),
    ("GET", "/caf%c3%a9", Forwarded("default", "/caf%C3%A9")),
    ("GET", "/a%20b/%7e", Forwarded("default", "/a%20b/~")),
    ("GET", "/x/%2e%2e", Forwarded("default", "/")),
];

struct World {
    key: SigningKey,
    idp: FakeIdp,
    app: FrameworkApp,
    sidecar: Running,
}

async fn world() -> World {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let app = FrameworkApp::start().await;
    let yaml = format!(
        r#"
issuer: {issuer}
audience: {AUD}
app: "{app}"
jwks: {{retry: 50ms, fetch_timeout: 2s}}
outbound: {{client: {{client_id: {AUD}, secret: test-only}}}}
routes:
  - {{name: health, path: /healthz, public: true}}
  - {{name: builds, path: /builds, methods: [POST], scopes: ["update:builds"]}}
  - {{name: admin, path: /admin, acr: [mfa], case_insensitive: true}}
  - name: default
    path: /
    claims: [{{claim: grants, contains: {AUD}}}]
"#,
        issuer = idp.issuer,
        app = app.addr,
    );
    let cfg = Config::from_yaml(&yaml, "sidecar.yaml").expect("test config");
    let listeners = Listeners::ephemeral(&cfg).await.expect("bind");
    let sidecar = sidecar::start(cfg, listeners, None).await.expect("start");
    assert!(sidecar.ready(Duration::from_secs(20)).await, "JWKS loads");
    World {
        key,
        idp,
        app,
        sidecar,
    }
}

/// One answer, as read off the socket.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends `method target` exactly as written (no client library normalises it) with `token`.
async fn send(to: SocketAddr, method: &str, target: &str, token: &str) -> Answer {
    let mut tcp = tokio::net::TcpStream::connect(to).await.expect("connect");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: b.example\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// `baton_inbound_requests_total` by `(route, outcome)`.
fn counts(s: &Running) -> HashMap<(String, String), u64> {
    s.metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("baton_inbound_requests_total{route=\""))
        .filter_map(|l| {
            let (route, rest) = l.split_once("\",outcome=\"")?;
            let (outcome, n) = rest.split_once("\"} ")?;
            Some((
                (route.to_owned(), outcome.to_owned()),
                n.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// The one route whose counter moved between `before` and `after`.
fn counted(
    before: &HashMap<(String, String), u64>,
    after: &HashMap<(String, String), u64>,
) -> String {
    let moved: Vec<_> = after
        .iter()
        .filter(|(k, n)| before.get(*k).copied().unwrap_or(0) < **n)
        .map(|((route, _), _)| route.clone())
        .collect();
    assert_eq!(moved.len(), 1, "one request, one count: {moved:?}");
    moved[0].clone()
}

#[test_log::test(tokio::test)]
async fn every_spelling_of_a_protected_path_gets_its_verdict_or_400() {
    assert!(CATALOGUE.len() >= 40);
    let w = world().await;
    let weak = access(
        &w.key,
        &with(claims(&w.idp.issuer, AUD), json!({"acr": "pwd"})),
    );
    for &(method, target, expect) in CATALOGUE {
        let seen = w.app.received().len();
        let rsp = send(w.sidecar.inbound, method, target, &weak).await;
        let case = format!(
            "{method} {target} ({expect:?}): {} {}",
            rsp.status, rsp.head
        );
        // Whatever the table says: a spelling the app would resolve to a protected resource
        // never passes on the weaker route's verdict.
        let path = target.trim_start_matches("http://b.example");
        let resolved = framework_view(path.split('?').next().unwrap_or("/"));
        let protected = app_route(method, &resolved);
        if matches!(protected, "admin" | "builds") {
            assert!(
                matches!(rsp.status, 400 | 401 | 403),
                "{case}: the app would serve {resolved}"
            );
        }
        match expect {
            Admin => {
                assert_eq!(rsp.status, 401, "{case}");
                assert!(
                    rsp.head.contains("insufficient_user_authentication")
                        && rsp.head.contains("acr_values=\"mfa\""),
                    "{case}"
                );
            }
            Builds => {
                assert_eq!(rsp.status, 403, "{case}");
                assert!(rsp.head.contains("scope=\"update:builds\""), "{case}");
            }
            Bad => assert_eq!(rsp.status, 400, "{case}"),
            Forwarded(route, path) => {
                assert_eq!(rsp.status, 200, "{case}");
                let received = w.app.received();
                assert_eq!(received.len(), seen + 1, "{case}");
                assert_eq!(
                    received[seen], path,
                    "{case}: the app gets the canonical path"
                );
                assert_eq!(
                    app_route(method, &rsp.body),
                    route,
                    "{case}: served {}",
                    rsp.body
                );
                continue;
            }
        }
        assert_eq!(w.app.received().len(), seen, "{case}: the app saw nothing");
    }
    assert!(w.sidecar.stop().await);
}

#[test_log::test(tokio::test)]
async fn what_the_app_receives_is_what_the_route_matched() {
    let w = world().await;
    let now = unix_now();
    let strong = access(
        &w.key,
        &with(
            claims(&w.idp.issuer, AUD),
            json!({"acr": "mfa", "auth_time": now, "scope": "read update:builds"}),
        ),
    );
    let mut forwarded = 0;
    for &(method, target, _) in CATALOGUE {
        let seen = w.app.received().len();
        let before = counts(&w.sidecar);
        let rsp = send(w.sidecar.inbound, method, target, &strong).await;
        let case = format!("{method} {target}: {} {}", rsp.status, rsp.head);
        if rsp.status == 400 {
            assert_eq!(w.app.received().len(), seen, "{case}");
            continue;
        }
        assert_eq!(rsp.status, 200, "{case}");
        forwarded += 1;
        let received = w.app.received();
        assert_eq!(received.len(), seen + 1, "{case}");
        let given = &received[seen];
        // The app had nothing left to resolve: its view of the path is the path, decoded.
        let decoded = decode(given);
        let decoded = decoded.trim_end_matches('/');
        assert_eq!(
            framework_view(given),
            if decoded.is_empty() { "/" } else { decoded },
            "{case}: given {given}"
        );
        let matched = counted(&before, &counts(&w.sidecar));
        assert_eq!(
            app_route(method, &rsp.body),
            matched,
            "{case}: the sidecar matched {matched}, the app served {}",
            rsp.body
        );
    }
    assert!(
        forwarded >= 30,
        "most spellings pass with a strong token: {forwarded}"
    );
    assert!(w.sidecar.stop().await);
}
