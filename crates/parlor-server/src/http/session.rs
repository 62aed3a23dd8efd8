//! Browser sessions. A sign-in with `X-Parlor-Session: cookie` keeps its refresh token out
//! of the page: it goes into an HttpOnly, Secure, SameSite=Strict cookie that is sent only
//! to the session routes. Those also need the `X-Parlor-CSRF` header, which a cross-site
//! form cannot send and a cross-origin script cannot send without a CORS preflight.

use actix_web::{
    cookie::{time::Duration as CookieAge, Cookie, SameSite},
    web::{self, Data},
    HttpRequest, HttpResponse,
};
use parlor_protocol::ErrorCode;

use crate::{
    error::{ApiError, ApiResult},
    server::Shared,
    users::{self, Tokens},
};

const SESSION_HEADER: &str = "x-parlor-session";
const CSRF_HEADER: &str = "x-parlor-csrf";
const COOKIE: &str = "parlor_refresh";
/// The cookie's path: the browser sends it to these routes only.
const PATH: &str = "/api/v1/auth/session";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/session/refresh", web::post().to(refresh))
        .route("/auth/session/logout", web::post().to(logout));
}

fn cookie(value: String, max_age_secs: u64) -> Cookie<'static> {
    Cookie::build(COOKIE, value)
        .path(PATH)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .max_age(CookieAge::seconds(
            i64::try_from(max_age_secs).unwrap_or(i64::MAX),
        ))
        .finish()
}

/// The answer to a sign-in: the tokens, or for a cookie session, the tokens without the
/// refresh token, which goes into the cookie.
pub(super) fn signed_in(req: &HttpRequest, shared: &Shared, mut t: Tokens) -> HttpResponse {
    let wants = req
        .headers()
        .get(SESSION_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cookie"));
    if !wants {
        return HttpResponse::Ok().json(t);
    }
    let refresh = std::mem::take(&mut t.refresh_token);
    HttpResponse::Ok()
        .cookie(cookie(refresh, shared.cfg.auth.refresh_ttl_secs))
        .json(t)
}

fn csrf(req: &HttpRequest) -> ApiResult<()> {
    match req.headers().get(CSRF_HEADER) {
        Some(v) if v.as_bytes() == b"1" => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            "session routes need the header X-Parlor-CSRF: 1",
        )),
    }
}

fn session_token(req: &HttpRequest) -> Option<String> {
    req.cookie(COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// A new access token for the cookie's session; the cookie rotates with it.
async fn refresh(req: HttpRequest, shared: Data<Shared>) -> ApiResult<HttpResponse> {
    csrf(&req)?;
    let token = session_token(&req)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "no session; sign in"))?;
    let mut t = shared.users.send(users::Refresh { token }).await??;
    let refresh = std::mem::take(&mut t.refresh_token);
    Ok(HttpResponse::Ok()
        .cookie(cookie(refresh, shared.cfg.auth.refresh_ttl_secs))
        .json(t))
}

/// Ends the session: its refresh token is used up, so the cookie is worthless even if a
/// copy survives, and the cookie is cleared.
async fn logout(req: HttpRequest, shared: Data<Shared>) -> ApiResult<HttpResponse> {
    csrf(&req)?;
    if let Some(token) = session_token(&req) {
        shared.users.send(users::EndSession { token }).await?;
    }
    Ok(HttpResponse::NoContent()
        .cookie(cookie(String::new(), 0))
        .finish())
}
