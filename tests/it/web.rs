//! The web client at `/` and browser sessions: the pod's own files with their security
//! headers, and a refresh token that lives in a cookie page scripts cannot read.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use super::support::{http, TestServer};

async fn error_code(resp: reqwest::Response) -> String {
    let v: Value = resp.json().await.unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_pod_serves_its_web_client_with_security_headers_and_nothing_else() {
    let s = TestServer::start().await;
    let http = http();
    let index = http.get(s.http_url() + "/").send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let h = index.headers().clone();
    assert!(h[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let page = index.text().await.unwrap();
    assert!(page.contains("<title>"), "{page}");
    // The index's assets are there, cached for good (their names carry a hash).
    for asset in page
        .split('"')
        .filter(|p| p.starts_with("/assets/") || p.starts_with("assets/"))
    {
        let r = http
            .get(format!(
                "{}/{}",
                s.http_url(),
                asset.trim_start_matches('/')
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(r.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
    }
    for path in ["/assets/nope.js", "/.env", "/assets/../Cargo.toml", "/x//y"] {
        let r = http.get(s.http_url() + path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(r).await, "NOT_FOUND", "{path}");
    }
    // Other methods get the JSON 404 too, and the API keeps its own.
    let r = http.post(s.http_url() + "/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(s.http_url() + "/api/v1/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "NOT_FOUND");
}

#[tokio::test]
async fn web_dir_serves_the_client_from_disk_with_content_types() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>dev</title>",
    )
    .unwrap();
    std::fs::write(dir.path().join("assets/app-1.js"), "export {};").unwrap();
    std::fs::write(dir.path().join("assets/app-1.css"), "body{}").unwrap();
    let web = dir.path().to_owned();
    let s = TestServer::with(move |c| c.server.web_dir = web).await;
    let http = http();
    let page = http.get(s.http_url() + "/").send().await.unwrap();
    assert_eq!(
        page.text().await.unwrap(),
        "<!doctype html><title>dev</title>"
    );
    for (path, kind) in [
        ("/assets/app-1.js", "text/javascript"),
        ("/assets/app-1.css", "text/css"),
    ] {
        let r = http.get(s.http_url() + path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    let r = http
        .get(s.http_url() + "/assets/../../etc/passwd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The session cookie a response set, as `name=value`, and its attributes.
fn session_cookie(resp: &reqwest::Response) -> (String, String) {
    let set = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("parlor_refresh="))
        .expect("a session cookie");
    let (pair, attrs) = set.split_once(';').unwrap();
    (pair.to_owned(), attrs.to_owned())
}

#[tokio::test]
async fn a_cookie_session_keeps_the_refresh_token_out_of_the_page_and_needs_the_csrf_header() {
    let s = TestServer::start().await;
    let http = http();
    let signed_in = http
        .post(s.http_url() + "/api/v1/auth/guest")
        .header("X-Parlor-Session", "cookie")
        .json(&json!({"name": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let (cookie, attrs) = session_cookie(&signed_in);
    for a in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/v1/auth/session",
    ] {
        assert!(attrs.contains(a), "{attrs} lacks {a}");
    }
    let body: Value = signed_in.json().await.unwrap();
    assert_eq!(
        body["refresh_token"], "",
        "the page never sees the refresh token"
    );
    assert!(!body["access_token"].as_str().unwrap().is_empty());
    assert!(cookie.len() > "parlor_refresh=".len() + 20);

    let refresh = |cookie: Option<&str>, csrf: bool| {
        let mut req = http.post(s.http_url() + "/api/v1/auth/session/refresh");
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        if csrf {
            req = req.header("X-Parlor-CSRF", "1");
        }
        req.send()
    };
    // Without the header, a cross-site request carrying the cookie gets nothing.
    let r = refresh(Some(&cookie), false).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "FORBIDDEN");
    let r = refresh(None, true).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(r).await, "UNAUTHENTICATED");

    // The cookie rotates; the old one is spent, and using it again is refused.
    let r = refresh(Some(&cookie), true).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (next, _) = session_cookie(&r);
    assert_ne!(next, cookie);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["refresh_token"], "");
    assert_eq!(body["user"]["name"], "web");
    let again = refresh(Some(&cookie), true).await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);

    // A fresh session, then sign-out: the cookie is cleared and its token spent.
    let r = http
        .post(s.http_url() + "/api/v1/auth/guest")
        .header("X-Parlor-Session", "cookie")
        .json(&json!({"name": "web2"}))
        .send()
        .await
        .unwrap();
    let (cookie, _) = session_cookie(&r);
    let out = http
        .post(s.http_url() + "/api/v1/auth/session/logout")
        .header(header::COOKIE, &cookie)
        .header("X-Parlor-CSRF", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let (cleared, attrs) = session_cookie(&out);
    assert_eq!(cleared, "parlor_refresh=");
    assert!(attrs.contains("Max-Age=0"), "{attrs}");
    let r = refresh(Some(&cookie), true).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Without the session header, sign-in answers as before: both tokens in the body.
    let plain: Value = http
        .post(s.http_url() + "/api/v1/auth/guest")
        .json(&json!({"name": "native"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!plain["refresh_token"].as_str().unwrap().is_empty());
}
