use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ClientError, Result};

#[cfg(test)]
mod tests;

/// A JSON client for the HTTP API at a base address like `http://127.0.0.1:8080`.
#[derive(Debug, Clone)]
pub struct Rest {
    base: String,
    http: reqwest::Client,
}

/// The tokens (and user id) an auth endpoint returns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "TokensWire")]
pub struct Tokens {
    /// The short-lived access token (JWT), for Hello and bearer auth.
    pub access_token: String,
    /// The refresh token, for `refresh`.
    pub refresh_token: String,
    /// The id of the authenticated user.
    pub user_id: String,
}

/// The JSON shape of an auth answer; fields not named here are ignored.
#[derive(Deserialize)]
struct TokensWire {
    access_token: String,
    refresh_token: String,
    user: UserWire,
}

#[derive(Deserialize)]
struct UserWire {
    id: String,
}

impl From<TokensWire> for Tokens {
    fn from(w: TokensWire) -> Self {
        Tokens {
            access_token: w.access_token,
            refresh_token: w.refresh_token,
            user_id: w.user.id,
        }
    }
}

impl Rest {
    /// Makes a client for the API at `base` (a trailing `/` is ignored).
    pub fn new(base: impl Into<String>) -> Rest {
        let mut base = base.into();
        while base.ends_with('/') {
            base.pop();
        }
        Rest {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `body` as JSON to `path` and returns the JSON answer (`null` if empty).
    pub async fn post_json(&self, path: &str, body: &Value, bearer: Option<&str>) -> Result<Value> {
        let req = self.http.post(self.url(path)).json(body);
        self.execute(req, bearer).await
    }

    /// GETs `path` and returns the JSON answer (`null` if empty).
    pub async fn get_json(&self, path: &str, bearer: Option<&str>) -> Result<Value> {
        let req = self.http.get(self.url(path));
        self.execute(req, bearer).await
    }

    /// Signs in as a guest with a display name.
    pub async fn guest(&self, name: &str) -> Result<Tokens> {
        self.tokens("/api/v1/auth/guest", json!({ "name": name }))
            .await
    }

    /// Registers an account and signs in.
    pub async fn register(&self, login: &str, password: &str, name: &str) -> Result<Tokens> {
        let body = json!({ "login": login, "password": password, "name": name });
        self.tokens("/api/v1/auth/register", body).await
    }

    /// Signs in with a login and password.
    pub async fn login(&self, login: &str, password: &str) -> Result<Tokens> {
        let body = json!({ "login": login, "password": password });
        self.tokens("/api/v1/auth/login", body).await
    }

    /// Trades a refresh token for fresh tokens.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let body = json!({ "refresh_token": refresh_token });
        self.tokens("/api/v1/auth/refresh", body).await
    }

    async fn tokens(&self, path: &str, body: Value) -> Result<Tokens> {
        let value = self.post_json(path, &body, None).await?;
        serde_json::from_value(value).map_err(|e| ClientError::Decode(format!("tokens: {e}")))
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/{path}", self.base)
        }
    }

    async fn execute(&self, req: reqwest::RequestBuilder, bearer: Option<&str>) -> Result<Value> {
        let req = match bearer {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            return Err(ClientError::from_http_body(status.as_u16(), &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }
}
