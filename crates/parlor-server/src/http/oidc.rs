//! Third-party sign-in routes, under /api/v1/auth/oidc (see `auth::oidc`).

use actix_web::{
    cookie::{time::Duration as CookieAge, Cookie, SameSite},
    http::header,
    web::{self, Data},
    HttpRequest, HttpResponse,
};
use parlor_core::UserId;
use parlor_protocol::ErrorCode;
use serde::Deserialize;

use crate::{
    error::{ApiError, ApiResult},
    server::Shared,
    users::{self, SignedIn},
};

/// Binds a callback to the browser that started the sign-in.
const BINDING_COOKIE: &str = "parlor_oidc";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/oidc", web::get().to(providers))
        .route("/auth/oidc/{provider}/start", web::get().to(start))
        .route("/auth/oidc/{provider}/link", web::post().to(link))
        .route("/auth/oidc/{provider}/callback", web::get().to(callback));
}

/// A cookie sent only to the provider's callback, and only over HTTPS (browsers count
/// http://localhost as secure). `Lax`, because the callback is a cross-site navigation.
fn binding_cookie(provider: &str, value: &str, max_age_secs: i64) -> String {
    Cookie::build(BINDING_COOKIE, value.to_owned())
        .path(format!("/api/v1/auth/oidc/{provider}/callback"))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .max_age(CookieAge::seconds(max_age_secs))
        .finish()
        .to_string()
}

async fn providers(shared: Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "providers": shared.oidc.names() }))
}

#[derive(Deserialize)]
struct StartQuery {
    #[serde(default)]
    login_hint: Option<String>,
}

async fn begin(
    shared: &Shared,
    provider: &str,
    hint: Option<&str>,
    link_to: Option<UserId>,
) -> ApiResult<(String, String)> {
    let (url, binding) = shared.oidc.start(provider, hint, link_to).await?;
    let ttl = i64::try_from(shared.cfg.auth.oidc_state_ttl_secs).unwrap_or(i64::MAX);
    Ok((url, binding_cookie(provider, &binding, ttl)))
}

/// Sends the browser to the provider.
async fn start(
    shared: Data<Shared>,
    path: web::Path<String>,
    q: web::Query<StartQuery>,
) -> ApiResult<HttpResponse> {
    let (url, cookie) = begin(&shared, &path, q.login_hint.as_deref(), None).await?;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// Begins linking an identity to the caller's account: the URL to send the browser to.
async fn link(
    req: HttpRequest,
    shared: Data<Shared>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let me = super::caller(&req, &shared).await?;
    let (url, cookie) = begin(&shared, &path, None, Some(me.id)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, cookie))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "url": url })))
}

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    /// RFC 9207: the issuer that answered, where the provider says.
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The provider sends the browser back here.
async fn callback(
    req: HttpRequest,
    shared: Data<Shared>,
    path: web::Path<String>,
    q: web::Query<CallbackQuery>,
) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let binding = req.cookie(BINDING_COOKIE).map(|c| c.value().to_owned());
    if let Some(error) = &q.error {
        return Err(shared.oidc.abandon(&q.state, error).await);
    }
    if q.code.is_empty() || q.state.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the callback needs code and state",
        ));
    }
    let verified = shared
        .oidc
        .finish(
            &path,
            &q.code,
            &q.state,
            q.iss.as_deref(),
            binding.as_deref(),
        )
        .await?;
    let return_to = verified.return_to.clone();
    let signed_in = shared
        .users
        .send(users::ExternalLogin {
            identity: verified.identity,
            name: verified.name,
            link_to: verified.link_to,
            code: !return_to.is_empty(),
        })
        .await??;
    let clear = binding_cookie(&path, "", 0);
    Ok(match signed_in {
        SignedIn::Tokens(t) => {
            super::track(&shared, "login", &t);
            HttpResponse::Ok()
                .insert_header((header::SET_COOKIE, clear))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(t)
        }
        // In the fragment, which browsers never send on, so it stays out of logs.
        SignedIn::Code(code) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("{return_to}#login_code={code}")))
            .insert_header((header::SET_COOKIE, clear))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    })
}
