//! HTTP routes. Public: the REST API under /api/v1, /ws and the JWKS. Admin (separate port):
//! /metrics, /health/live, /health/ready. Every error is `{"error":{"code","message"}}`.

use actix_web::{
    error::JsonPayloadError,
    http::header,
    web::{self, Data, Json},
    HttpRequest, HttpResponse,
};
use parlor_core::{RoomId, UserId};
use parlor_protocol::ErrorCode;
use parlor_store::{StatsSubject, UserRecord};
use serde::Deserialize;

use std::sync::Arc;

use actix_web::dev::Service as _;
use futures_util::future::Either;

use crate::{
    auth::TokenKind,
    error::{ApiError, ApiResult},
    guard::Guard,
    server::Shared,
    users::{self, PublicUser},
    ws::{ws_route, Identity},
};

/// The bearer token of a request, if any.
pub(crate) fn bearer(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

mod oidc;
mod session;
mod site;

/// The signed-in caller, or 401.
async fn caller(req: &HttpRequest, shared: &Shared) -> ApiResult<UserRecord> {
    let token = bearer(req)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "missing bearer token"))?;
    let claims = shared.verify_token(&token, TokenKind::Access)?;
    shared
        .users
        .send(users::CheckUser {
            id: UserId(claims.sub),
        })
        .await?
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::new(ErrorCode::BodyTooLarge, err.to_string())
        }
        _ => ApiError::new(ErrorCode::BadRequest, err.to_string()),
    };
    api.into()
}

/// The sign-in routes (guest, register, login, refresh, magic codes, third-party
/// sign-in): limited by `guard.auth_per_min` on top of the general REST limit.
const AUTH_PREFIX: &str = "/api/v1/auth/";

/// CORS for the configured origins. Same-origin pages need none; requests from an origin
/// that is not allowed were refused before this (see `public_routes`).
fn cors(guard: Arc<Guard>) -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allowed_origin_fn(move |origin, head| {
            let host = head
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok());
            origin.to_str().is_ok_and(|o| guard.origin_allowed(o, host))
        })
        .allowed_methods(["GET", "POST", "DELETE"])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(3600)
}

/// Registers the public routes.
pub(crate) fn public_routes(cfg: &mut web::ServiceConfig, max_body: usize, guard: Arc<Guard>) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body)
            .error_handler(json_error),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::new(ErrorCode::BadRequest, e.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::new(ErrorCode::BadRequest, e.to_string()).into()),
    )
    .route("/ws", web::get().to(ws_route))
    .route("/.well-known/jwks.json", web::get().to(jwks))
    .service(
        web::scope("/api/v1")
            .wrap(cors(guard.clone()))
            // Outermost: an origin that is not allowed, or an address over its limit, is
            // refused before any other work, in the one error format.
            .wrap_fn(move |req, srv| {
                let auth = req.path().starts_with(AUTH_PREFIX);
                let verdict = guard
                    .check_origin(req.request())
                    .and_then(|()| guard.rest(guard.client(req.request()), auth));
                match verdict {
                    Ok(()) => Either::Left(srv.call(req)),
                    Err(e) => Either::Right(std::future::ready(Err(e.into()))),
                }
            })
            .route("/auth/guest", web::post().to(guest))
            .route("/auth/register", web::post().to(register))
            .route("/auth/login", web::post().to(login))
            .route("/auth/refresh", web::post().to(refresh))
            .route("/auth/magic", web::post().to(magic))
            .route("/auth/magic/redeem", web::post().to(redeem))
            .configure(oidc::routes)
            .configure(session::routes)
            .route("/rooms", web::get().to(list_rooms))
            .route("/rooms", web::post().to(create_room))
            .route("/rooms/{id}", web::get().to(get_room))
            .route("/rooms/{id}", web::delete().to(delete_room))
            .route("/rooms/{id}/messages", web::get().to(room_messages))
            .route(
                "/rooms/{id}/messages/export",
                web::get().to(export_messages),
            )
            .route("/me", web::get().to(me))
            .route("/me", web::delete().to(delete_me))
            .route("/me/stats", web::get().to(my_stats))
            .route("/me/blocks", web::get().to(my_blocks))
            .route("/me/blocks/{id}", web::put().to(block))
            .route("/me/blocks/{id}", web::delete().to(unblock))
            .route("/admin/audit", web::get().to(audit_log))
            .route("/admin/pods", web::get().to(admin_pods))
            .route("/admin/analytics", web::get().to(analytics_stream))
            .route("/leaderboards/{kind}", web::get().to(leaderboard))
            .route("/question-sets", web::post().to(upload_question_set))
            .route("/question-sets", web::get().to(question_sets))
            .route("/question-sets/{id}", web::get().to(question_set))
            .route("/tournaments", web::post().to(create_tournament))
            .route("/tournaments/{id}", web::get().to(get_tournament))
            .route(
                "/tournaments/{id}/register",
                web::post().to(register_tournament),
            )
            .route("/tournaments/{id}/start", web::post().to(start_tournament))
            .route("/users/{id}/stats", web::get().to(user_stats)),
    )
    .configure(site::routes)
    .default_service(web::to(not_found));
}

async fn not_found() -> ApiResult<HttpResponse> {
    Err(ApiError::new(ErrorCode::NotFound, "no such route"))
}

async fn jwks(shared: Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.keys.jwks())
}

/// Puts an account event on the analytics stream.
fn track(shared: &Shared, kind: &str, t: &users::Tokens) {
    let user = Some(UserId(t.user.id.clone()));
    let event = parlor_store::AnalyticsEvent::now(kind, user, None);
    shared.analytics.do_send(crate::analytics::Track(event));
}

#[derive(Deserialize)]
struct GuestBody {
    name: String,
}

async fn guest(
    req: HttpRequest,
    shared: Data<Shared>,
    body: Json<GuestBody>,
) -> ApiResult<HttpResponse> {
    let t = shared
        .users
        .send(users::Guest {
            name: body.into_inner().name,
        })
        .await??;
    track(&shared, "signup", &t);
    Ok(session::signed_in(&req, &shared, t))
}

#[derive(Deserialize)]
struct RegisterBody {
    login: String,
    password: String,
    #[serde(default)]
    name: String,
}

async fn register(
    req: HttpRequest,
    shared: Data<Shared>,
    body: Json<RegisterBody>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let t = shared
        .users
        .send(users::Register {
            login: b.login,
            password: b.password,
            name: b.name,
            from: shared.guard.client(&req),
        })
        .await??;
    track(&shared, "signup", &t);
    Ok(session::signed_in(&req, &shared, t))
}

#[derive(Deserialize)]
struct LoginBody {
    login: String,
    password: String,
}

async fn login(
    req: HttpRequest,
    shared: Data<Shared>,
    body: Json<LoginBody>,
) -> ApiResult<HttpResponse> {
    let b = body.into_inner();
    let t = shared
        .users
        .send(users::Login {
            login: b.login,
            password: b.password,
            from: shared.guard.client(&req),
        })
        .await??;
    track(&shared, "login", &t);
    Ok(session::signed_in(&req, &shared, t))
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(shared: Data<Shared>, body: Json<RefreshBody>) -> ApiResult<HttpResponse> {
    let t = shared
        .users
        .send(users::Refresh {
            token: body.into_inner().refresh_token,
        })
        .await??;
    Ok(HttpResponse::Ok().json(t))
}

#[derive(Deserialize)]
struct MagicBody {
    user_id: Option<String>,
    login: Option<String>,
}

async fn magic(
    req: HttpRequest,
    shared: Data<Shared>,
    body: Json<MagicBody>,
) -> ApiResult<HttpResponse> {
    let me = caller(&req, &shared).await?;
    parlor_core::check(
        parlor_core::Action::IssueMagicCode,
        me.role,
        None,
        &Default::default(),
    )?;
    let b = body.into_inner();
    // Logged before the code exists: an admin action that cannot be logged is not done.
    let target = b.user_id.clone().or(b.login.clone()).unwrap_or_default();
    shared
        .store
        .audit
        .append_audit(&[parlor_store::AuditRecord::now(
            me.id.clone(),
            "account.magic_code",
            &target,
            None,
            "",
        )])
        .await?;
    let (code, expires_at_ms, user_id) = shared
        .users
        .send(users::IssueMagic {
            user_id: b.user_id.map(UserId),
            login: b.login,
        })
        .await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "code": code, "expires_at_ms": expires_at_ms, "user_id": user_id
    })))
}

#[derive(Deserialize)]
struct RedeemBody {
    code: String,
}

async fn redeem(
    req: HttpRequest,
    shared: Data<Shared>,
    body: Json<RedeemBody>,
) -> ApiResult<HttpResponse> {
    let t = shared
        .users
        .send(users::RedeemMagic {
            code: body.into_inner().code,
        })
        .await??;
    track(&shared, "login", &t);
    Ok(session::signed_in(&req, &shared, t))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

fn summary_json(s: &parlor_protocol::v1::RoomSummary) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "code": s.code, "name": s.name, "kind": s.kind,
        "public": s.visibility == parlor_protocol::v1::Visibility::Public as i32,
        "member_count": s.member_count, "max_members": s.max_members,
        "has_password": s.has_password, "owner_id": s.owner_id, "persistent": s.persistent,
    })
}

async fn list_rooms(shared: Data<Shared>, q: web::Query<ListQuery>) -> ApiResult<HttpResponse> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let kind = (!q.kind.is_empty()).then_some(q.kind.as_str());
    let (rooms, total) = shared.directory.list(kind, q.offset, limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "rooms": rooms.iter().map(summary_json).collect::<Vec<_>>(),
        "total": total,
    })))
}

async fn get_room(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = RoomId(id.into_inner());
    // The checkpoint holds the members; a persistent room that is not running has none.
    let live = match shared.broker.load(&id).await? {
        Some(cp) => cp.room()?,
        None => None,
    };
    let room = match live {
        Some(room) => room,
        None => shared
            .directory
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::RoomNotFound, "no such room"))?,
    };
    // Private rooms are visible to their members and staff only.
    if !room.info.public {
        let me = caller(&req, &shared).await?;
        if room.member(&me.id).is_none() && !me.role.is_staff() && room.info.owner_id != me.id {
            return Err(ApiError::new(ErrorCode::RoomNotFound, "no such room"));
        }
    }
    let members: Vec<_> = room
        .members
        .iter()
        .map(|m| serde_json::json!({"user_id": m.user_id, "name": m.name, "role": m.role}))
        .collect();
    let mut body = summary_json(&room.summary());
    body["members"] = members.into();
    body["settings"] = serde_json::to_value(&room.settings).unwrap_or_default();
    Ok(HttpResponse::Ok().json(body))
}

async fn delete_room(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let me = caller(&req, &shared).await?;
    let (room_id, room) = shared
        .rooms
        .send(crate::rooms::Resolve {
            room_id: id.into_inner(),
            code: String::new(),
        })
        .await??;
    let by = crate::ws::Identity {
        user_id: me.id,
        name: me.name,
        role: me.role,
    };
    match room {
        crate::rooms::RoomRef::Local(room) => room.send(crate::rooms::DeleteRoom { by }).await??,
        crate::rooms::RoomRef::Remote(home) => {
            shared.relay.delete_room(&home, &room_id, &by).await?
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The room whose history `req`'s caller may read: any signed-in account not banned from
/// a public room; a private room's members, owner and staff.
async fn readable_history(req: &HttpRequest, shared: &Shared, id: String) -> ApiResult<RoomId> {
    let me = caller(req, shared).await?;
    let id = RoomId(id);
    let room = shared
        .directory
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::RoomNotFound, "no such room"))?;
    let role = match room.member(&me.id) {
        Some(m) => Some(m.role),
        None => (room.info.owner_id == me.id).then_some(parlor_core::RoomRole::Owner),
    };
    parlor_core::check(
        parlor_core::Action::ReadHistory,
        me.role,
        role,
        &room.policy(),
    )?;
    if room.bans.contains(&me.id) && !me.role.is_staff() {
        return Err(ApiError::new(
            ErrorCode::Banned,
            "you are banned from this room",
        ));
    }
    Ok(id)
}

/// One history line as JSON; a game's update carries `game`, its `GameUpdate` protobuf in
/// base64 (what `parlor verify` reads).
fn line_json(l: &parlor_store::ChatRecord) -> serde_json::Value {
    let mut v = serde_json::json!({
        "seq": l.seq,
        "from_user_id": l.from_user_id,
        "from_name": l.from_name,
        "text": l.text,
        "sent_at_ms": l.sent_at_ms,
    });
    if let Some(g) = &l.game {
        v["game"] = serde_json::Value::String(g.clone());
    }
    v
}

#[derive(Deserialize)]
struct PageQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

/// Most lines or records one page returns.
const MAX_PAGE: usize = 500;

/// A page size from `?limit=`: `default` when absent, else 1 to `MAX_PAGE`.
fn page_limit(limit: Option<usize>, default: usize) -> ApiResult<usize> {
    let limit = limit.unwrap_or(default);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("limit must be 1 to {MAX_PAGE}"),
        ))
    }
}

async fn room_messages(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let id = readable_history(&req, &shared, id.into_inner()).await?;
    let limit = page_limit(q.limit, 50)?;
    let lines = shared.store.chat.recent_chat(&id, q.before, limit).await?;
    // A full page may have older lines before it.
    let next_before = (lines.len() == limit)
        .then(|| lines.first().map(|l| l.seq))
        .flatten();
    let messages: Vec<_> = lines.iter().map(line_json).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "messages": messages,
        "next_before": next_before,
    })))
}

/// The whole history as JSON Lines, oldest first, read from the store a page at a time so
/// that a long campaign never sits in memory at once.
async fn export_messages(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = readable_history(&req, &shared, id.into_inner()).await?;
    let chat = shared.store.chat.clone();
    let pages = futures_util::stream::try_unfold(Some(0u64), move |after| {
        let (chat, id) = (chat.clone(), id.clone());
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let lines = chat.chat_after(&id, after, MAX_PAGE).await.map_err(|e| {
                tracing::warn!(error = %e, room = %id, "chat export cut short");
                actix_web::error::ErrorServiceUnavailable(e)
            })?;
            let next = (lines.len() == MAX_PAGE)
                .then(|| lines.last().map(|l| l.seq))
                .flatten();
            let mut out = Vec::new();
            for l in &lines {
                // Encoding a JSON value into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, &line_json(l));
                out.push(b'\n');
            }
            Ok::<_, actix_web::Error>(Some((bytes::Bytes::from(out), next)))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(pages))
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    kind: String,
    #[serde(default = "yes")]
    public: bool,
    #[serde(default)]
    password: String,
    #[serde(default)]
    max_members: u32,
    #[serde(default)]
    persistent: bool,
    #[serde(default)]
    settings: SettingsBody,
}

/// Room settings over REST; an absent field keeps its default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    allow_chat: Option<bool>,
    allow_guests: Option<bool>,
    owner_only_play: Option<bool>,
    owner_only_chat: Option<bool>,
    welcome_message: Option<String>,
    event_rate_limit: Option<u32>,
    echo_events: Option<bool>,
}

fn yes() -> bool {
    true
}

/// The caller as the tournaments see them.
async fn identity(req: &HttpRequest, shared: &Shared) -> ApiResult<Identity> {
    let me = caller(req, shared).await?;
    Ok(Identity {
        user_id: me.id,
        name: me.name,
        role: me.role,
    })
}

#[derive(Deserialize)]
struct TournamentBody {
    name: String,
    max_players: u32,
    /// Default: an hour from now.
    registration_closes_at_ms: Option<i64>,
}

async fn create_tournament(
    req: HttpRequest,
    shared: Data<Shared>,
    body: Json<TournamentBody>,
) -> ApiResult<HttpResponse> {
    let me = identity(&req, &shared).await?;
    let b = body.into_inner();
    let name = parlor_core::validate_name(
        "tournament name",
        &b.name,
        shared.cfg.core_limits().name_chars,
    )?;
    let closes = b
        .registration_closes_at_ms
        .unwrap_or_else(|| parlor_core::now_ms() + 3_600_000);
    let t =
        crate::tournaments::create(&organizing(&shared), &me, name, b.max_players, closes).await?;
    Ok(HttpResponse::Created().json(crate::tournaments::to_json(&t)))
}

async fn get_tournament(shared: Data<Shared>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let t = shared
        .store
        .tournaments
        .tournament(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such tournament"))?;
    Ok(HttpResponse::Ok().json(crate::tournaments::to_json(&t)))
}

async fn register_tournament(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let me = identity(&req, &shared).await?;
    let t = crate::tournaments::register(&shared.store, &id, &me).await?;
    Ok(HttpResponse::Ok().json(crate::tournaments::to_json(&t)))
}

async fn start_tournament(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let me = identity(&req, &shared).await?;
    let t = crate::tournaments::start(&organizing(&shared), &id, &me).await?;
    Ok(HttpResponse::Ok().json(crate::tournaments::to_json(&t)))
}

fn organizing(shared: &Shared) -> crate::tournaments::Organizing {
    crate::tournaments::Organizing {
        store: shared.store.clone(),
        rooms: shared.rooms.clone(),
        link: shared.relay.link(),
    }
}

/// Moderators and admins only: question sets hold their answers.
async fn question_manager(req: &HttpRequest, shared: &Shared) -> ApiResult<UserRecord> {
    let me = caller(req, shared).await?;
    parlor_core::check(
        parlor_core::Action::ManageQuestionSets,
        me.role,
        None,
        &parlor_core::RoomPolicy::default(),
    )?;
    Ok(me)
}

#[derive(Deserialize)]
struct QuestionSetBody {
    name: String,
    questions: Vec<parlor_games::trivia::Question>,
    /// Any host may play it (else its uploader and staff only).
    #[serde(default)]
    public: bool,
}

/// Validates and stores a trivia question set; a host plays it with
/// `TriviaConfig.question_set_id`.
async fn upload_question_set(
    req: HttpRequest,
    shared: Data<Shared>,
    body: Json<QuestionSetBody>,
) -> ApiResult<HttpResponse> {
    let me = question_manager(&req, &shared).await?;
    let b = body.into_inner();
    let name =
        parlor_core::validate_name("set name", &b.name, shared.cfg.core_limits().name_chars)?;
    parlor_games::trivia::check_set(&b.questions)?;
    let at = parlor_core::now_ms();
    let record = parlor_store::QuestionSetRecord {
        id: format!("{at:013}-{}", parlor_core::new_id("")),
        name,
        by: me.id,
        created_at_ms: at,
        questions: serde_json::to_value(&b.questions)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        public: b.public,
    };
    shared.store.questions.put_question_set(&record).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({
        "id": record.id, "name": record.name, "questions": b.questions.len(),
        "public": record.public,
    })))
}

async fn question_sets(
    req: HttpRequest,
    shared: Data<Shared>,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    question_manager(&req, &shared).await?;
    let q = q.into_inner();
    let limit = page_limit(q.limit, 50)?;
    let sets = shared
        .store
        .questions
        .question_sets(q.before, limit)
        .await?;
    let next_before = (sets.len() == limit)
        .then(|| sets.last().map(|s| s.id.clone()))
        .flatten();
    let rows: Vec<_> = sets
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id, "name": s.name, "by": s.by, "created_at_ms": s.created_at_ms,
                "questions": s.questions.as_array().map_or(0, Vec::len), "public": s.public,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sets": rows, "next_before": next_before })))
}

async fn question_set(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    question_manager(&req, &shared).await?;
    match shared.store.questions.question_set(&id).await? {
        Some(s) => Ok(HttpResponse::Ok().json(s)),
        None => Err(ApiError::new(ErrorCode::NotFound, "no such question set")),
    }
}

async fn create_room(
    req: HttpRequest,
    shared: Data<Shared>,
    body: Json<CreateBody>,
) -> ApiResult<HttpResponse> {
    use parlor_protocol::v1;
    let me = caller(&req, &shared).await?;
    let b = body.into_inner();
    let create = v1::CreateRoom {
        name: b.name,
        kind: b.kind,
        visibility: if b.public {
            v1::Visibility::Public
        } else {
            v1::Visibility::Private
        } as i32,
        password: b.password,
        max_members: b.max_members,
        settings: Some(v1::RoomSettings {
            allow_chat: b.settings.allow_chat,
            allow_guests: b.settings.allow_guests,
            owner_only_play: b.settings.owner_only_play,
            owner_only_chat: b.settings.owner_only_chat,
            welcome_message: b.settings.welcome_message,
            event_rate_limit: b.settings.event_rate_limit,
            echo_events: b.settings.echo_events,
        }),
        persistent: b.persistent,
        // Over REST a server-run kind starts with its defaults.
        game: None,
    };
    let (id, _) = shared
        .rooms
        .send(crate::rooms::Create {
            req: create,
            owner: Identity {
                user_id: me.id,
                name: me.name,
                role: me.role,
            },
            tournament: None,
            quota: true,
        })
        .await??;
    let room = shared
        .directory
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::RoomNotFound, "room closed"))?;
    Ok(HttpResponse::Created().json(summary_json(&room.summary())))
}

async fn me(req: HttpRequest, shared: Data<Shared>) -> ApiResult<HttpResponse> {
    let me = caller(&req, &shared).await?;
    let mut body = serde_json::to_value(PublicUser::from(&me)).unwrap_or_default();
    body["login"] = me.login.clone().into();
    body["created_at_ms"] = me.created_at_ms.into();
    Ok(HttpResponse::Ok().json(body))
}

async fn delete_me(req: HttpRequest, shared: Data<Shared>) -> ApiResult<HttpResponse> {
    let me = caller(&req, &shared).await?;
    shared
        .users
        .send(users::DeleteUser { id: me.id.clone() })
        .await??;
    shared
        .relay
        .close_user(&*shared.presence, &me.id, "account deleted")
        .await;
    shared
        .conns
        .do_send(crate::connections::CloseUser { user_id: me.id });
    Ok(HttpResponse::NoContent().finish())
}

async fn my_blocks(req: HttpRequest, shared: Data<Shared>) -> ApiResult<HttpResponse> {
    let me = caller(&req, &shared).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "blocked": me.blocked })))
}

async fn set_block(
    req: HttpRequest,
    shared: Data<Shared>,
    target: String,
    blocked: bool,
) -> ApiResult<HttpResponse> {
    let me = caller(&req, &shared).await?;
    parlor_core::Limits::check_len("user id", target.len(), parlor_core::ID_BYTES)?;
    let list = shared
        .users
        .send(users::SetBlock {
            user: me.id,
            target: UserId(target),
            blocked,
        })
        .await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "blocked": list })))
}

async fn block(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    set_block(req, shared, id.into_inner(), true).await
}

async fn unblock(
    req: HttpRequest,
    shared: Data<Shared>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    set_block(req, shared, id.into_inner(), false).await
}

/// Admins only: the cluster's live pods, with their sessions.
async fn admin_pods(req: HttpRequest, shared: Data<Shared>) -> ApiResult<HttpResponse> {
    let me = caller(&req, &shared).await?;
    parlor_core::check(
        parlor_core::Action::ReadCluster,
        me.role,
        None,
        &Default::default(),
    )?;
    let pods = shared.presence.pods().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "pods": pods
            .iter()
            .map(|p| serde_json::json!({
                "name": p.name,
                "sessions": p.sessions,
                "expires_at_ms": p.expires_at_ms,
            }))
            .collect::<Vec<_>>(),
    })))
}

async fn my_stats(req: HttpRequest, shared: Data<Shared>) -> ApiResult<HttpResponse> {
    let me = caller(&req, &shared).await?;
    let s = shared.store.stats.stats(&StatsSubject::User(me.id)).await?;
    Ok(HttpResponse::Ok().json(s))
}

#[derive(Deserialize)]
struct BoardQuery {
    limit: Option<usize>,
    /// `me`: the caller's place and up to `limit` players either side.
    around: Option<String>,
}

async fn leaderboard(
    req: HttpRequest,
    shared: Data<Shared>,
    kind: web::Path<String>,
    q: web::Query<BoardQuery>,
) -> ApiResult<HttpResponse> {
    let kind = kind.into_inner();
    parlor_core::validate_kind(&kind)?;
    let q = q.into_inner();
    let limit = page_limit(q.limit, 10)?;
    let row = |place: u64, r: &parlor_store::Rating| {
        serde_json::json!({
            "place": place, "user_id": r.user, "rating": r.value, "games": r.games,
            "wins": r.wins, "losses": r.losses,
        })
    };
    match q.around.as_deref() {
        None => {
            let top = shared.store.ratings.leaderboard(&kind, limit).await?;
            let rows: Vec<_> = (1..).zip(&top).map(|(p, r)| row(p, r)).collect();
            Ok(HttpResponse::Ok().json(serde_json::json!({ "kind": kind, "players": rows })))
        }
        Some("me") => {
            let me = caller(&req, &shared).await?;
            let around = shared.store.ratings.around(&kind, &me.id, limit).await?;
            let Some((place, window)) = around else {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    "you have no rating in this kind yet",
                ));
            };
            // The place and the window are separate reads: keep them consistent even if
            // players moved in between.
            let at = window.iter().position(|r| r.user == me.id).unwrap_or(0) as u64;
            let first = place.saturating_sub(at).max(1);
            let rows: Vec<_> = (first..).zip(&window).map(|(p, r)| row(p, r)).collect();
            Ok(HttpResponse::Ok().json(serde_json::json!({
                "kind": kind, "place": place, "players": rows,
            })))
        }
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "around takes only \"me\"",
        )),
    }
}

/// A user's counters and ratings. Public, as leaderboards are.
async fn user_stats(shared: Data<Shared>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = UserId(id.into_inner());
    let user = shared
        .store
        .accounts
        .get_user(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "no such user"))?;
    let stats = shared
        .store
        .stats
        .stats(&StatsSubject::User(id.clone()))
        .await?;
    let ratings = shared.store.ratings.ratings_of(&id).await?;
    let ratings: serde_json::Map<String, serde_json::Value> = ratings
        .into_iter()
        .map(|r| {
            let v = serde_json::json!({
                "rating": r.value, "games": r.games, "uncertainty": r.uncertainty,
                "wins": r.wins, "losses": r.losses,
            });
            (r.kind, v)
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "user_id": user.id, "name": user.name, "stats": stats, "ratings": ratings,
    })))
}

#[derive(Deserialize)]
struct AuditQuery {
    before: Option<String>,
    limit: Option<usize>,
}

/// Admins only: a page of an id-ordered log, newest first, as `{field: [...], next_before}`.
async fn admin_page<T: serde::Serialize>(
    req: &HttpRequest,
    shared: &Shared,
    q: AuditQuery,
    field: &str,
    read: impl AsyncFnOnce(Option<String>, usize) -> parlor_store::Result<Vec<T>>,
    id: impl Fn(&T) -> String,
) -> ApiResult<HttpResponse> {
    let me = caller(req, shared).await?;
    parlor_core::check(
        parlor_core::Action::ReadAudit,
        me.role,
        None,
        &Default::default(),
    )?;
    let limit = page_limit(q.limit, 50)?;
    let items = read(q.before, limit).await?;
    let next_before = (items.len() == limit)
        .then(|| items.last().map(&id))
        .flatten();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        field: items,
        "next_before": next_before,
    })))
}

async fn audit_log(
    req: HttpRequest,
    shared: Data<Shared>,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let log = shared.store.audit.clone();
    let read = async |before, limit| log.audit_page(before, limit).await;
    admin_page(&req, &shared, q.into_inner(), "records", read, |r| {
        r.id.clone()
    })
    .await
}

async fn analytics_stream(
    req: HttpRequest,
    shared: Data<Shared>,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let stream = shared.store.analytics.clone();
    let read = async |before, limit| stream.events(before, limit).await;
    admin_page(&req, &shared, q.into_inner(), "events", read, |e| {
        e.id.clone()
    })
    .await
}

/// Registers the admin routes.
pub(crate) fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .default_service(web::to(not_found));
}

async fn metrics(shared: Data<Shared>) -> HttpResponse {
    shared.metrics.sync_cluster(shared.cluster.counters());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(shared.metrics.render())
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "live"}))
}

async fn ready(shared: Data<Shared>) -> HttpResponse {
    // A probe answers within its own timeout even while the store is unreachable.
    let ping = tokio::time::timeout(std::time::Duration::from_secs(1), shared.store.ping());
    let store_ok = matches!(ping.await, Ok(Ok(())));
    let draining = shared.is_draining();
    let cluster_ok = shared.cluster.ready();
    let ok = store_ok && cluster_ok && !draining;
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "not_ready" },
        "store": store_ok,
        "cluster": cluster_ok,
        "draining": draining,
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
