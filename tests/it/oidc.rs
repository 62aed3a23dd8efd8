//! Third-party sign-in (OpenID Connect) against a real provider: oidc-provider on Node,
//! started by the test on 127.0.0.1 (tests/oidc/provider.mjs). The test plays the browser:
//! it follows the redirects itself, keeping each side's cookies.

use std::{collections::HashMap, process::Stdio, time::Duration};

use parlor_server::{Config, OidcProvider};
use reqwest::{header, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::support::*;

/// The ID-token changes the provider makes for a client (see provider.mjs), each a pod
/// provider of that name whose sign-ins must be refused, with the metric reason.
const TAMPERED: [(&str, &str); 5] = [
    ("aud", "oidc_audience"),
    ("iss", "oidc_issuer"),
    ("exp", "oidc_expired"),
    ("nonce", "oidc_nonce"),
    ("sig", "oidc_signature"),
];

struct IdProvider {
    issuer: String,
    _child: tokio::process::Child,
    /// Kept open: a provider whose stdout is closed dies of EPIPE.
    _stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// Starts the provider with one client per pod provider name; `pod` is the pod's URL,
/// where each client's callback is.
async fn id_provider(pod: &str, names: &[&str]) -> IdProvider {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/oidc-provider")
            .exists(),
        "oidc-provider is not installed: run scripts/test-deps.sh (npm ci in tests/oidc)"
    );
    let clients: Vec<Value> = names
        .iter()
        .map(|n| {
            serde_json::json!({
                "client_id": format!("parlor-{n}"),
                "client_secret": format!("secret-{n}"),
                "redirect_uri": format!("{pod}/api/v1/auth/oidc/{n}/callback"),
                "tamper": TAMPERED.iter().any(|(t, _)| t == n).then_some(n),
            })
        })
        .collect();
    let mut child = tokio::process::Command::new("node")
        .arg("provider.mjs")
        .current_dir(dir)
        .env(
            "PARLOR_OIDC_CLIENTS",
            serde_json::to_string(&clients).unwrap(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node is required for the OIDC test");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("provider start")
        .unwrap()
        .expect("provider printed its issuer");
    let issuer = line.strip_prefix("issuer ").unwrap().to_owned();
    IdProvider {
        issuer,
        _child: child,
        _stdout: lines,
    }
}

fn provider_cfg(cfg: &mut Config, pod: &str, issuer: &str, name: &str) {
    cfg.auth.oidc.push(OidcProvider {
        name: name.into(),
        issuer: issuer.into(),
        client_id: format!("parlor-{name}"),
        client_secret: format!("secret-{name}"),
        redirect_uri: format!("{pod}/api/v1/auth/oidc/{name}/callback"),
        return_to: if name == "web" {
            "/".into()
        } else {
            String::new()
        },
        ..OidcProvider::default()
    });
}

/// `name=value` of each Set-Cookie, into `jar`.
fn keep_cookies(jar: &mut HashMap<String, String>, resp: &reqwest::Response) {
    for v in resp.headers().get_all(header::SET_COOKIE) {
        let pair = v.to_str().unwrap().split(';').next().unwrap();
        let (k, v) = pair.split_once('=').unwrap();
        jar.insert(k.trim().to_owned(), v.trim().to_owned());
    }
}

fn cookie_header(jar: &HashMap<String, String>) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A browser partway through a sign-in: the callback URL the provider sent it to, and
/// the pod's binding cookie.
struct AtCallback {
    url: String,
    cookie: String,
}

/// Follows the provider's redirects from `auth_url` until it sends the browser back to
/// `pod`.
async fn through_provider(issuer: &str, pod: &str, auth_url: &str) -> String {
    let (client, mut jar) = (http(), HashMap::new());
    let mut url = auth_url.to_owned();
    for _ in 0..10 {
        let resp = client
            .get(&url)
            .header(header::COOKIE, cookie_header(&jar))
            .send()
            .await
            .unwrap();
        keep_cookies(&mut jar, &resp);
        assert!(resp.status().is_redirection(), "{url}: {}", resp.status());
        let next = resp.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        url = if next.starts_with('/') {
            format!("{issuer}{next}")
        } else {
            next
        };
        if url.starts_with(pod) {
            return url;
        }
    }
    panic!("the provider never sent the browser back");
}

/// Starts a sign-in at the pod (`start` with `login_hint`) and goes through the provider.
async fn begin(issuer: &str, pod: &str, provider: &str, who: &str) -> AtCallback {
    let resp = http()
        .get(format!(
            "{pod}/api/v1/auth/oidc/{provider}/start?login_hint={who}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let auth_url = resp.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    to_callback(issuer, pod, binding(&resp), &auth_url).await
}

/// The binding cookie that the pod's answer beginning a sign-in set.
fn binding(resp: &reqwest::Response) -> String {
    let mut jar = HashMap::new();
    keep_cookies(&mut jar, resp);
    format!("parlor_oidc={}", jar["parlor_oidc"])
}

/// A browser holding `cookie`, sent to the provider's `auth_url` and through it.
async fn to_callback(issuer: &str, pod: &str, cookie: String, auth_url: &str) -> AtCallback {
    assert!(auth_url.starts_with(issuer), "{auth_url}");
    for part in [
        "code_challenge_method=S256",
        "nonce=",
        "state=",
        "scope=openid",
    ] {
        assert!(auth_url.contains(part), "{auth_url} lacks {part}");
    }
    AtCallback {
        url: through_provider(issuer, pod, auth_url).await,
        cookie,
    }
}

/// Calls the callback as the browser: (status, Location, JSON body).
async fn finish(at: &AtCallback, cookie: bool, host: Option<&str>) -> (u16, String, Value) {
    let mut url = at.url.clone();
    if let Some(host) = host {
        let path = &url[url.find("/api/").unwrap()..];
        url = format!("{host}{path}");
    }
    let mut req = http().get(url);
    if cookie {
        req = req.header(header::COOKIE, &at.cookie);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.text().await.unwrap();
    (
        status,
        location,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

fn refusal(got: &(u16, String, Value)) -> String {
    assert_eq!(got.0, 401, "{got:?}");
    assert_eq!(got.2["error"]["code"], "TOKEN_INVALID", "{got:?}");
    got.2["error"]["message"].as_str().unwrap().to_owned()
}

async fn me(pod: &str, token: &str) -> Value {
    let resp = http()
        .get(format!("{pod}/api/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_finds_or_creates_the_account_and_refuses_every_forgery() {
    let names = ["good", "web", "aud", "iss", "exp", "nonce", "sig"];
    // The provider needs the pod's callbacks, and the pod the provider's issuer.
    let at = reserve();
    let idp = id_provider(&at.url, &names).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    for n in names {
        provider_cfg(&mut cfg, &at.url, &idp.issuer, n);
    }
    let pod = TestServer::start_reserved(cfg, at).await;
    let (issuer, url) = (idp.issuer.as_str(), pod.http_url());

    let listed: Value = http()
        .get(format!("{url}/api/v1/auth/oidc"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["providers"].as_array().unwrap().len(), names.len());

    // A first sign-in creates an account, named from the claims; a second finds it.
    let alice = begin(issuer, &url, "good", "alice").await;
    let (status, _, first) = finish(&alice, true, None).await;
    assert_eq!(status, 200, "{first}");
    let alice_id = first["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["user"]["name"], "alice");
    assert_eq!(first["user"]["role"], "user");
    let token = first["access_token"].as_str().unwrap();
    assert_eq!(me(&url, token).await["id"], alice_id.as_str());
    let (_, welcome) = pod.connect(Some(token)).await;
    assert_eq!(welcome.user.unwrap().id, alice_id);
    let again = finish(&begin(issuer, &url, "good", "alice").await, true, None).await;
    assert_eq!(again.2["user"]["id"], alice_id.as_str(), "{again:?}");
    let bob = finish(&begin(issuer, &url, "good", "bob").await, true, None).await;
    assert_eq!(bob.0, 200, "{bob:?}");
    assert_ne!(bob.2["user"]["id"], alice_id.as_str());

    // A replayed callback: its state was used.
    let replay = finish(&alice, true, None).await;
    assert!(refusal(&replay).contains("state"), "{replay:?}");

    // A callback from a browser other than the one that started it, which uses the state
    // up: the right browser cannot finish it afterwards either.
    let carol = begin(issuer, &url, "good", "carol").await;
    assert!(refusal(&finish(&carol, false, None).await).contains("another browser"));
    assert!(refusal(&finish(&carol, true, None).await).contains("state"));

    // Every forged ID token, signed with the provider's key (but "sig"), is refused for
    // what it is, and creates no account.
    for (name, reason) in TAMPERED {
        let before = metric(
            &pod.metrics().await,
            &format!("parlor_auth_failures_total{{reason=\"{reason}\"}}"),
        );
        let got = finish(&begin(issuer, &url, name, "mallory").await, true, None).await;
        let why = refusal(&got);
        assert!(why.contains("ID token"), "{name}: {why}");
        let after = metric(
            &pod.metrics().await,
            &format!("parlor_auth_failures_total{{reason=\"{reason}\"}}"),
        );
        assert_eq!(after, before + 1.0, "{name}: {why}");
    }
    let mallory = finish(&begin(issuer, &url, "good", "mallory").await, true, None).await;
    assert_eq!(mallory.0, 200);
    let mallory_id = mallory.2["user"]["id"].as_str().unwrap();
    assert!(![alice_id.as_str(), bob.2["user"]["id"].as_str().unwrap()].contains(&mallory_id));

    // A browser flow (`return_to`): a one-time code in the fragment, for the same person
    // at the same issuer, so the same account.
    let (status, location, _) =
        finish(&begin(issuer, &url, "web", "alice").await, true, None).await;
    assert_eq!(status, 303);
    let code = location.strip_prefix("/#login_code=").unwrap();
    let redeemed: Value = http()
        .post(format!("{url}/api/v1/auth/magic/redeem"))
        .json(&serde_json::json!({ "code": code }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(redeemed["user"]["id"], alice_id.as_str(), "{redeemed}");

    // Linking: a guest adds an identity to their account, and then signs in with it.
    // An identity that signs into another account cannot be linked.
    let rest = pod.rest();
    let guest = rest.guest("Dana").await.unwrap();
    let linked = link(issuer, &url, &guest.access_token, "dana").await;
    assert_eq!(linked.0, 200, "{linked:?}");
    assert_eq!(linked.2["user"]["id"], guest.user_id.as_str());
    let dana = finish(&begin(issuer, &url, "good", "dana").await, true, None).await;
    assert_eq!(dana.2["user"]["id"], guest.user_id.as_str());
    let other = rest.guest("Eve").await.unwrap();
    let stolen = link(issuer, &url, &other.access_token, "alice").await;
    assert_eq!(stolen.0, 403, "{stolen:?}");

    let unknown = http()
        .get(format!("{url}/api/v1/auth/oidc/nobody/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// Links the identity `who` to the account of `token`, through the provider.
async fn link(issuer: &str, pod: &str, token: &str, who: &str) -> (u16, String, Value) {
    let resp = http()
        .post(format!("{pod}/api/v1/auth/oidc/good/link"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = binding(&resp);
    let body: Value = resp.json().await.unwrap();
    let auth_url = format!("{}&login_hint={who}", body["url"].as_str().unwrap());
    finish(
        &to_callback(issuer, pod, cookie, &auth_url).await,
        true,
        None,
    )
    .await
}

/// Any pod takes the callback: the sign-in starts on one pod and ends on another of the
/// same cluster (one MongoDB store), and a replay there is refused as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_callback_on_another_pod_of_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = store_config(dir.path(), StoreKind::MongoDb);
    let at = reserve();
    let idp = id_provider(&at.url, &["good"]).await;
    provider_cfg(&mut cfg, &at.url, &idp.issuer, "good");
    let a = TestServer::start_reserved(cfg.clone(), at).await;
    // The same config, so the same store and signing key (in the shared data dir).
    let b = TestServer::start_config(cfg).await;

    let at = begin(&idp.issuer, &a.http_url(), "good", "alice").await;
    let (status, _, body) = finish(&at, true, Some(&b.http_url())).await;
    assert_eq!(status, 200, "{body}");
    let replay = finish(&at, true, Some(&a.http_url())).await;
    assert!(refusal(&replay).contains("state"), "{replay:?}");
}
