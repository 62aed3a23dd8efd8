//! The web client at `/`: the files of web/dist, built into the binary (build.rs), or read
//! from `server.web_dir` when that is set. Every page is `/` (the client routes by hash),
//! so the only paths are the index and the files beside it.

use actix_web::{
    http::header,
    web::{self, Data},
    HttpResponse,
};
use bytes::Bytes;
use parlor_protocol::ErrorCode;

use crate::{
    error::{ApiError, ApiResult},
    server::Shared,
};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Scripts, styles and sockets from this origin only; no inline script, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self' ws: wss:; media-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    // Other methods get the JSON 404 of every unknown route, not a bare 405.
    cfg.service(
        web::resource("/")
            .route(web::get().to(index))
            .default_service(web::to(super::not_found)),
    )
    .service(
        web::resource("/{file:.+}")
            .route(web::get().to(file))
            .default_service(web::to(super::not_found)),
    );
}

async fn index(shared: Data<Shared>) -> ApiResult<HttpResponse> {
    serve(&shared, "index.html").await
}

async fn file(shared: Data<Shared>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    serve(&shared, &path.into_inner()).await
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "webmanifest" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn serve(shared: &Shared, name: &str) -> ApiResult<HttpResponse> {
    let missing = || ApiError::new(ErrorCode::NotFound, "no such route");
    // Names come from the URL: no way out of the folder, no hidden files.
    if name.split('/').any(|p| p.is_empty() || p.starts_with('.')) {
        return Err(missing());
    }
    let dir = &shared.cfg.server.web_dir;
    // The built-in files are served from the binary as they are, never copied.
    let body = if dir.as_os_str().is_empty() {
        match WEB_ASSETS.iter().find(|(n, _)| *n == name) {
            Some((_, bytes)) => Bytes::from_static(bytes),
            None if name == "index.html" => Bytes::from_static(NOT_BUILT.as_bytes()),
            None => return Err(missing()),
        }
    } else {
        Bytes::from(
            tokio::fs::read(dir.join(name))
                .await
                .map_err(|_| missing())?,
        )
    };
    // Assets carry a content hash in their names; the index names the current ones.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type(name)))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(body))
}

/// What `/` shows when the binary was built without web/dist.
const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
<title>Parlor</title><h1>Parlor</h1><p>This pod was built without its web client. \
Build it with <code>npm ci && npm run build</code> in <code>web/</code>, then rebuild the pod.</p></html>";
