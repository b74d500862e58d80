//! The logout spec's frontend flow in a real browser: headless Chromium opens `examples/spa/` served from
//! one loopback origin, and its script calls the example server on another (so every authenticated call
//! is preceded by a CORS preflight): log in, keep the tokens in `localStorage`, call the API, list the
//! sessions, log out, clear storage, then handle the `401`; a second tab (an iframe with its own login)
//! finds its token rejected after the first tab logged out. The page writes what it saw into the DOM;
//! Chromium dumps the DOM and this test reads it.
//!
//! Needs Chromium (`/usr/bin/chromium`, or `CHROMIUM=path`); prints `skipped: ...` without it. `.ci/run`
//! installs it.

mod support;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;
use tower::service_fn;

use support::example_server::ExampleServer;
use support::http::{boxed, serve, Body};

fn chromium() -> Option<PathBuf> {
    let candidates = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].map(PathBuf::from));
    let found = candidates.into_iter().find(|path| path.exists());
    if found.is_none() {
        println!("skipped: no Chromium (install Debian's `chromium`, or set CHROMIUM=/path/to/chrome)");
    }
    found
}

/// Serves `examples/spa/` on a loopback port of its own: the page's origin.
async fn serve_spa() -> std::net::SocketAddr {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("spa");
    serve(service_fn(move |request: Request<Incoming>| {
        let root = root.clone();
        async move {
            let name = match request.uri().path() {
                "/" => "index.html",
                path => path.trim_start_matches('/'),
            };
            let file = (!name.contains("..")).then(|| std::fs::read(root.join(name)).ok()).flatten();
            let response = match file {
                Some(bytes) => {
                    let content_type =
                        if name.ends_with(".js") { "text/javascript" } else { "text/html; charset=utf-8" };
                    Response::builder().header("content-type", content_type).body(Full::new(Bytes::from(bytes)))
                }
                None => Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new())),
            };
            Ok::<Response<Body>, Infallible>(response.unwrap().map(boxed))
        }
    }))
    .await
}

/// Opens `url` in headless Chromium and returns the DOM once the page's scripts are done.
fn dump_dom(chromium: &Path, url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("tower-token-auth-chromium-{}-{}", std::process::id(), rand()));
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Waits for the page's fetches and timers (virtual time stops while the network is busy).
        .args(["--virtual-time-budget=30000", "--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("chromium runs").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&profile);
    reader.join().expect("reader thread")
}

fn rand() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    u64::from_le_bytes(bytes)
}

/// The JSON the page wrote into `<pre id="results">`.
fn results(dom: &str) -> Value {
    let start =
        dom.find(r#"<pre id="results" data-done="true">"#).unwrap_or_else(|| panic!("the page did not finish:\n{dom}"));
    let text = &dom[start..];
    let text = &text[text.find('>').unwrap() + 1..text.find("</pre>").unwrap()];
    let text = text.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spa_flow_works_from_another_origin_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let spa = serve_spa().await;
    let origin = format!("http://{spa}");
    let api = ExampleServer::start(&["--cors-origin", &origin], "info");
    let url = format!("{origin}/index.html?auto&api=http://{}", api.addr);
    let dom = tokio::task::spawn_blocking(move || dump_dom(&chromium, &url)).await.unwrap();
    let r = results(&dom);

    assert_eq!(r["login"]["status"], 200, "{r:#}");
    assert_eq!(r["login"]["stored"], true, "both tokens in localStorage");
    assert_eq!(r["tab2_login"]["status"], 200, "{r:#}");
    assert_eq!(r["user"]["status"], 200);
    assert_eq!(r["user"]["body"]["email"], "demo@example.com");
    assert_eq!(r["sessions"]["status"], 200);
    assert_eq!(r["sessions"]["names"], serde_json::json!(["tab 2", "tab 1"]), "newest first");
    assert_eq!(r["sessions"]["current"], serde_json::json!(["tab 1"]));
    assert_eq!(r["logout"]["status"], 200);
    assert_eq!(r["logout"]["body"]["message"], "Successfully logged out");
    assert_eq!(r["logout"]["cleared"], true, "storage cleared after logout");
    // The 401 after logout: its body and its challenge are readable from the page's script.
    assert_eq!(r["after_logout"]["status"], 401);
    assert_eq!(r["after_logout"]["body"]["message"], "Unauthenticated.");
    assert_eq!(r["after_logout"]["wwwAuthenticate"], r#"Bearer error="invalid_token""#);
    // The other tab's token went with the logout (every session of the user).
    assert_eq!(r["tab2_after_logout"]["status"], 401, "{r:#}");
    assert_eq!(r["tab2_after_logout"]["body"]["message"], "Unauthenticated.");
    // Logging out with a stale token: a 401, handled as "already logged out".
    assert_eq!(r["logout_again"]["status"], 401);
    assert_eq!(r["logout_again"]["cleared"], true);
    // (Each of those calls carried `Authorization` from another origin, so the browser sent a CORS
    // preflight first; the next test shows the page fails without the server's CORS answer.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_the_browser_blocks_the_page() {
    let Some(chromium) = chromium() else { return };
    let spa = serve_spa().await;
    let api = ExampleServer::start(&[], "warn");
    let url = format!("http://{spa}/index.html?auto&api=http://{}", api.addr);
    let dom = tokio::task::spawn_blocking(move || dump_dom(&chromium, &url)).await.unwrap();
    let r = results(&dom);
    assert!(r["login"]["error"].as_str().is_some_and(|e| e.contains("Failed to fetch")), "{r:#}");
    assert!(r["user"]["error"].is_string(), "{r:#}");
}
