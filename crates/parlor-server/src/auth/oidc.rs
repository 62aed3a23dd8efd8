//! Third-party sign-in: OpenID Connect, authorization code with PKCE (`auth.oidc`).
//!
//! `start` records a single-use state in the store, so that any pod can take the callback,
//! and `finish` takes it back, exchanges the code and verifies the ID token: signature,
//! `iss`, `aud`, `exp` and `nonce` (the `openidconnect` crate's checks). The state is bound
//! to the starting browser by a cookie, whose hash the state holds.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata},
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _,
};
use parlor_config::OidcProvider;
use parlor_core::{now_ms, UserId};
use parlor_protocol::ErrorCode;
use parlor_store::{LoginState, Store};
use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    error::{ApiError, ApiResult},
    Metrics,
};

/// Discovery documents (and the keys they name) are read again after this, or at once
/// when an ID token names a key they lack.
const METADATA_FRESH: Duration = Duration::from_secs(3600);
/// The most of a provider's answer that is read.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// An identity a provider vouched for.
#[derive(Debug)]
pub(crate) struct Verified {
    /// `identity_key(iss, sub)`.
    pub(crate) identity: String,
    /// A display name from the token's claims, if it has one.
    pub(crate) name: Option<String>,
    /// The account to link it to, if the sign-in was started to link.
    pub(crate) link_to: Option<UserId>,
    /// Where the browser goes next (`return_to`), if configured.
    pub(crate) return_to: String,
}

struct Provider {
    cfg: OidcProvider,
    secret: Option<ClientSecret>,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

/// The configured providers.
pub(crate) struct Oidc {
    providers: HashMap<String, Provider>,
    store: Store,
    metrics: std::sync::Arc<Metrics>,
    http: reqwest::Client,
    state_ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

fn hash(v: &str) -> String {
    hex::encode(Sha256::digest(v.as_bytes()))
}

fn display_name(
    username: Option<&openidconnect::EndUserUsername>,
    name: Option<&openidconnect::LocalizedClaim<openidconnect::EndUserName>>,
    email: Option<&openidconnect::EndUserEmail>,
) -> Option<String> {
    username
        .map(|u| u.as_str().to_owned())
        .or_else(|| {
            name.and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned())
        })
        .or_else(|| email.and_then(|e| e.split('@').next()).map(str::to_owned))
        .filter(|n| !n.trim().is_empty())
}

/// An error with its causes, which `openidconnect`'s errors keep out of their own text.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out = format!("{out}: {c}");
        cause = c.source();
    }
    out
}

fn refused(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::TokenInvalid, format!("sign-in refused: {why}"))
}

impl Oidc {
    /// Reads each provider's secret file; fails on one that cannot be read.
    pub(crate) fn new(
        cfg: &crate::Config,
        store: Store,
        metrics: std::sync::Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let mut providers = HashMap::new();
        for p in &cfg.auth.oidc {
            let secret = if p.client_secret_file.as_os_str().is_empty() {
                p.client_secret.clone()
            } else {
                std::fs::read_to_string(&p.client_secret_file)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "auth.oidc {}: client_secret_file {}: {e}",
                            p.name,
                            p.client_secret_file.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            };
            providers.insert(
                p.name.clone(),
                Provider {
                    cfg: p.clone(),
                    secret: (!secret.is_empty()).then(|| ClientSecret::new(secret)),
                    metadata: Mutex::new(None),
                },
            );
        }
        // A provider that redirects could send the token request elsewhere.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            providers,
            store,
            metrics,
            http,
            state_ttl: Duration::from_secs(cfg.auth.oidc_state_ttl_secs),
        })
    }

    /// The configured providers' names, sorted.
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    fn provider(&self, name: &str) -> ApiResult<&Provider> {
        self.providers
            .get(name)
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such sign-in provider"))
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let err = |e: reqwest::Error| HttpError(chain(&e));
        let (parts, body) = req.into_parts();
        let mut resp = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(err)?;
        let mut out = openidconnect::http::Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(err)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HttpError("the provider's answer is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        out.body(body).map_err(|e| HttpError(e.to_string()))
    }

    async fn client(&self, p: &Provider, fresh: bool) -> ApiResult<Client> {
        let cached = p
            .metadata
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| !fresh && at.elapsed() < METADATA_FRESH)
            .map(|(_, m)| m.clone());
        let metadata = match cached {
            Some(m) => m,
            None => {
                let issuer = IssuerUrl::new(p.cfg.issuer.clone()).map_err(ApiError::internal)?;
                let http = |req| self.send(req);
                let m = CoreProviderMetadata::discover_async(issuer, &http)
                    .await
                    .map_err(|e| {
                        ApiError::unavailable(format!(
                            "sign-in provider {} unreachable: {}",
                            p.cfg.name,
                            chain(&e)
                        ))
                    })?;
                *p.metadata.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), m.clone()));
                m
            }
        };
        let redirect = RedirectUrl::new(p.cfg.redirect_uri.clone()).map_err(ApiError::internal)?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.cfg.client_id.clone()),
            p.secret.clone(),
        )
        .set_redirect_uri(redirect))
    }

    /// Begins a sign-in: the provider's authorization URL to send the browser to, and the
    /// value of the cookie that binds the callback to this browser.
    pub(crate) async fn start(
        &self,
        name: &str,
        login_hint: Option<&str>,
        link_to: Option<UserId>,
    ) -> ApiResult<(String, String)> {
        let p = self.provider(name)?;
        let client = self.client(p, false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in p.cfg.scopes.iter().filter(|s| s.as_str() != "openid") {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        if let Some(hint) = login_hint.filter(|h| !h.is_empty() && h.len() <= 256) {
            req = req.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, state, nonce) = req.url();
        let binding = URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 32]>());
        let ttl = i64::try_from(self.state_ttl.as_millis()).unwrap_or(i64::MAX);
        self.store
            .accounts
            .put_login_state(&LoginState {
                state_hash: hash(state.secret()),
                provider: name.to_owned(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                binding_hash: hash(&binding),
                link_to,
                expires_at_ms: now_ms().saturating_add(ttl),
            })
            .await?;
        Ok((url.to_string(), binding))
    }

    /// The provider answered `error` instead of a code: the state is used up, so that it
    /// cannot be tried again, and the refusal is counted like the others.
    pub(crate) async fn abandon(&self, state: &str, error: &str) -> ApiError {
        if let Err(e) = self.store.accounts.take_login_state(&hash(state)).await {
            return e.into();
        }
        self.metrics
            .auth_failures
            .with_label_values(&["oidc_denied"])
            .inc();
        refused(format!("the provider answered {error:?}"))
    }

    /// Completes a sign-in from the provider's callback. The state is used up whatever the
    /// outcome, so a callback cannot be replayed.
    pub(crate) async fn finish(
        &self,
        name: &str,
        code: &str,
        state: &str,
        iss: Option<&str>,
        binding: Option<&str>,
    ) -> ApiResult<Verified> {
        let fail = |reason: &str, why: String| {
            self.metrics
                .auth_failures
                .with_label_values(&[reason])
                .inc();
            refused(why)
        };
        let p = self.provider(name)?;
        let saved = self
            .store
            .accounts
            .take_login_state(&hash(state))
            .await?
            .filter(|s| s.provider == name && s.expires_at_ms > now_ms())
            .ok_or_else(|| {
                fail(
                    "oidc_state",
                    "the sign-in state is unknown, used or expired".into(),
                )
            })?;
        let bound = binding
            .is_some_and(|b| bool::from(hash(b).as_bytes().ct_eq(saved.binding_hash.as_bytes())));
        if !bound {
            return Err(fail(
                "oidc_binding",
                "the sign-in was started in another browser".into(),
            ));
        }
        // RFC 9207: an answer from another provider, sent here to mix the two up.
        if iss.is_some_and(|i| i != p.cfg.issuer.trim_end_matches('/') && i != p.cfg.issuer) {
            return Err(fail(
                "oidc_issuer",
                "the callback names another issuer".into(),
            ));
        }
        let client = self.client(p, false).await?;
        let http = |req| self.send(req);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(ApiError::internal)?
            .set_pkce_verifier(PkceCodeVerifier::new(saved.pkce_verifier.clone()))
            .request_async(&http)
            .await
            .map_err(|e| {
                fail(
                    "oidc_code",
                    format!("the provider refused the code: {}", chain(&e)),
                )
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| fail("oidc_id_token", "the provider sent no ID token".into()))?;
        let nonce = Nonce::new(saved.nonce.clone());
        let checked = match id_token.claims(&client.id_token_verifier(), &nonce) {
            // A key the cached document lacks: the provider may have rotated its keys.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let client = self.client(p, true).await?;
                let verifier = client.id_token_verifier();
                id_token.claims(&verifier, &nonce).cloned()
            }
            r => r.cloned(),
        };
        let claims = checked.map_err(|e| {
            let reason = match &e {
                ClaimsVerificationError::Expired(_) => "oidc_expired",
                ClaimsVerificationError::InvalidAudience(_) => "oidc_audience",
                ClaimsVerificationError::InvalidIssuer(_) => "oidc_issuer",
                ClaimsVerificationError::InvalidNonce(_) => "oidc_nonce",
                ClaimsVerificationError::SignatureVerification(_) => "oidc_signature",
                _ => "oidc_id_token",
            };
            fail(reason, format!("ID token: {e}"))
        })?;
        let mut name = display_name(claims.preferred_username(), claims.name(), claims.email());
        // Many providers keep the profile out of the ID token: ask the userinfo endpoint,
        // which checks that its answer is about the same subject. A name is a nicety, so
        // a failure here does not refuse the sign-in.
        if name.is_none() {
            if let Ok(req) = client.user_info(
                tokens.access_token().clone(),
                Some(claims.subject().clone()),
            ) {
                let info: Result<openidconnect::core::CoreUserInfoClaims, _> =
                    req.request_async(&http).await;
                name = info.ok().and_then(|i| {
                    let c = i.standard_claims();
                    display_name(c.preferred_username(), c.name(), c.email())
                });
            }
        }
        Ok(Verified {
            identity: parlor_store::identity_key(claims.issuer().as_str(), claims.subject()),
            name,
            link_to: saved.link_to,
            return_to: p.cfg.return_to.clone(),
        })
    }
}
