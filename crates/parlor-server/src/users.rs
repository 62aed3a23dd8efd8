//! UserManager: accounts, logins, token issue and rotation, over the Store.
//!
//! Password hashing runs on the blocking pool and store calls are async, so the actor's
//! mailbox only ever does cache lookups and bookkeeping.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use actix::{
    Actor, ActorFutureExt, Context, Handler, Message, ResponseActFuture, ResponseFuture,
    Supervised, WrapFuture,
};
use parlor_core::{new_id, now_ms, validate_name, GlobalRole, UserId};
use parlor_protocol::ErrorCode;
use parlor_store::{MagicRecord, RefreshRecord, RefreshUse, Store, UserRecord};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    auth::{hash_password, verify_password, Keyring, TokenKind},
    error::{ApiError, ApiResult},
    Config, Metrics,
};

const CACHE_MAX: usize = 100_000;

/// Tokens handed to a client after a login.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tokens {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    pub(crate) user: PublicUser,
}

/// What clients see of an account.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PublicUser {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: GlobalRole,
}

impl From<&UserRecord> for PublicUser {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.0.clone(),
            name: u.name.clone(),
            role: u.role,
        }
    }
}

/// What every account request needs, shared by one Arc instead of cloned piece by piece.
struct Deps {
    store: Store,
    keys: Arc<Keyring>,
    cfg: Config,
    metrics: Arc<Metrics>,
    guard: Arc<crate::guard::Guard>,
}

/// Accounts recently checked. Only the manager writes it; sessions read it, so that a
/// Hello for a known account costs no round trip through the manager's thread.
#[derive(Clone, Default)]
pub(crate) struct UserCache(Arc<RwLock<HashMap<UserId, UserRecord>>>);

impl UserCache {
    pub(crate) fn get(&self, id: &UserId) -> Option<UserRecord> {
        let cache = self.0.read().unwrap_or_else(PoisonError::into_inner);
        cache.get(id).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<UserId, UserRecord>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Owns accounts and token issue.
pub(crate) struct UserManager {
    deps: Arc<Deps>,
    cache: UserCache,
    /// Accounts deleted through this pod, so that a lookup racing the delete is refused.
    deleted: std::collections::HashSet<UserId>,
    /// Recently read block lists, by account, with when they were read.
    blocks: HashMap<UserId, (std::time::Instant, Arc<Vec<UserId>>)>,
}

/// How long a block list read here is used before it is read again: a block made
/// through another pod holds here within this.
const BLOCKS_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

impl UserManager {
    pub(crate) fn new(
        store: Store,
        keys: Arc<Keyring>,
        cfg: Config,
        metrics: Arc<Metrics>,
        cache: UserCache,
        guard: Arc<crate::guard::Guard>,
    ) -> Self {
        Self {
            deps: Arc::new(Deps {
                store,
                keys,
                cfg,
                metrics,
                guard,
            }),
            cache,
            deleted: std::collections::HashSet::new(),
            blocks: HashMap::new(),
        }
    }

    fn remember(&mut self, user: &UserRecord) {
        let mut cache = self.cache.write();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(user.id.clone(), user.clone());
    }
}

impl Actor for UserManager {
    type Context = Context<Self>;
}

impl Supervised for UserManager {}

/// Issues an access and a refresh token for a user, in a new or existing family.
async fn issue(d: &Deps, user: &UserRecord, family: Option<String>) -> ApiResult<Tokens> {
    let (store, keys, cfg) = (&d.store, &d.keys, &d.cfg);
    let (access, _) = keys.issue(
        TokenKind::Access,
        user.id.as_str(),
        &user.name,
        user.role,
        cfg.auth.access_ttl_secs,
        None,
    );
    let family = family.unwrap_or_else(|| new_id("f_"));
    let (refresh, claims) = keys.issue(
        TokenKind::Refresh,
        user.id.as_str(),
        &user.name,
        user.role,
        cfg.auth.refresh_ttl_secs,
        Some(family.clone()),
    );
    store
        .accounts
        .put_refresh(&RefreshRecord {
            id: claims.jti,
            family,
            user_id: user.id.clone(),
            expires_at_ms: (claims.exp as i64) * 1000,
            used: false,
        })
        .await?;
    Ok(Tokens {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: cfg.auth.access_ttl_secs,
        user: user.into(),
    })
}

/// A new account with a fresh id and nothing to sign in with yet.
fn new_account(name: String, role: GlobalRole) -> UserRecord {
    UserRecord {
        id: UserId(new_id("u_")),
        name,
        login: None,
        password_hash: None,
        role,
        created_at_ms: now_ms(),
        blocked: Vec::new(),
        identities: Vec::new(),
    }
}

fn hash_code(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().to_ascii_uppercase().as_bytes()))
}

/// The account behind a verified token; refused if it was deleted.
#[derive(Message)]
#[rtype(result = "ApiResult<UserRecord>")]
pub(crate) struct CheckUser {
    pub(crate) id: UserId,
}

impl Handler<CheckUser> for UserManager {
    type Result = ResponseActFuture<Self, ApiResult<UserRecord>>;

    fn handle(&mut self, msg: CheckUser, _: &mut Context<Self>) -> Self::Result {
        if let Some(u) = self.cache.get(&msg.id) {
            return Box::pin(actix::fut::ready(Ok(u)));
        }
        let store = self.deps.store.clone();
        Box::pin(
            async move { store.accounts.get_user(&msg.id).await }
                .into_actor(self)
                .map(|res, act, _| match res? {
                    Some(user) if !act.deleted.contains(&user.id) => {
                        act.remember(&user);
                        Ok(user)
                    }
                    Some(_) => Err(ApiError::new(
                        ErrorCode::TokenInvalid,
                        "the account no longer exists",
                    )),
                    None => Err(ApiError::new(
                        ErrorCode::TokenInvalid,
                        "the account no longer exists",
                    )),
                }),
        )
    }
}

/// An account was deleted through another pod: forget it and refuse it from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forget {
    pub(crate) id: UserId,
}

impl Handler<Forget> for UserManager {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        self.forget(msg.id);
    }
}

impl UserManager {
    /// Drops an account from the cache and refuses it from now on (bounded).
    fn forget(&mut self, id: UserId) {
        self.cache.write().remove(&id);
        if self.deleted.len() >= CACHE_MAX {
            self.deleted.clear();
        }
        self.deleted.insert(id);
    }
}

/// Whether `to` takes private messages from `from` (it has not blocked them).
#[derive(Message)]
#[rtype(result = "ApiResult<bool>")]
pub(crate) struct Accepts {
    pub(crate) to: UserId,
    pub(crate) from: UserId,
}

impl UserManager {
    fn remember_blocks(&mut self, user: UserId, blocked: Vec<UserId>) {
        if self.blocks.len() >= CACHE_MAX {
            self.blocks.clear();
        }
        let at = std::time::Instant::now();
        self.blocks.insert(user, (at, Arc::new(blocked)));
    }
}

impl Handler<Accepts> for UserManager {
    type Result = ResponseActFuture<Self, ApiResult<bool>>;

    fn handle(&mut self, msg: Accepts, _: &mut Context<Self>) -> Self::Result {
        if let Some((at, list)) = self.blocks.get(&msg.to) {
            if at.elapsed() < BLOCKS_FRESH {
                return Box::pin(actix::fut::ready(Ok(!list.contains(&msg.from))));
            }
        }
        let store = self.deps.store.clone();
        let to = msg.to.clone();
        Box::pin(
            async move { store.accounts.get_user(&to).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    let user = res?
                        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "no such account"))?;
                    let accepts = !user.blocked.contains(&msg.from);
                    act.remember_blocks(msg.to, user.blocked);
                    Ok(accepts)
                }),
        )
    }
}

/// Blocks (or unblocks) private messages from `target` to `user`; answers the new list.
#[derive(Message)]
#[rtype(result = "ApiResult<Vec<UserId>>")]
pub(crate) struct SetBlock {
    pub(crate) user: UserId,
    pub(crate) target: UserId,
    pub(crate) blocked: bool,
}

impl Handler<SetBlock> for UserManager {
    type Result = ResponseActFuture<Self, ApiResult<Vec<UserId>>>;

    fn handle(&mut self, msg: SetBlock, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        // Read, change and write in this one actor, so that two blocks through this pod
        // at once do not undo each other.
        let fut = async move {
            if msg.target == msg.user || msg.target.as_str().is_empty() {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "name another account to block",
                ));
            }
            let mut user = d
                .store
                .accounts
                .get_user(&msg.user)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "no such account"))?;
            let had = user.blocked.contains(&msg.target);
            let cap = d.cfg.limits.blocks_per_user;
            match (msg.blocked, had) {
                (true, false) if user.blocked.len() >= cap => {
                    return Err(ApiError::new(
                        ErrorCode::QuotaExceeded,
                        format!("you block {cap} accounts already; unblock one first"),
                    ))
                }
                (true, false) => user.blocked.push(msg.target.clone()),
                (false, true) => user.blocked.retain(|u| *u != msg.target),
                _ => return Ok(user),
            }
            d.store.accounts.update_user(&user).await?;
            Ok(user)
        };
        Box::pin(fut.into_actor(self).map(|res, act, _| {
            let user = res?;
            act.remember(&user);
            act.remember_blocks(user.id.clone(), user.blocked.clone());
            Ok(user.blocked)
        }))
    }
}

/// Creates a guest account and signs it in.
#[derive(Message)]
#[rtype(result = "ApiResult<Tokens>")]
pub(crate) struct Guest {
    pub(crate) name: String,
}

impl Handler<Guest> for UserManager {
    type Result = ResponseFuture<ApiResult<Tokens>>;

    fn handle(&mut self, msg: Guest, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        Box::pin(async move {
            let (store, cfg) = (&d.store, &d.cfg);
            let name = validate_name("name", &msg.name, cfg.limits.name_chars)?;
            let user = new_account(name, GlobalRole::Guest);
            store.accounts.create_user(&user).await?;
            issue(&d, &user, None).await
        })
    }
}

/// Registers an account with a login and password.
#[derive(Message)]
#[rtype(result = "ApiResult<Tokens>")]
pub(crate) struct Register {
    pub(crate) login: String,
    pub(crate) password: String,
    pub(crate) name: String,
    /// Where it comes from: an address that registered an account may log into it
    /// while the account's failure budget is spent.
    pub(crate) from: Option<crate::guard::Addr>,
}

fn validate_login(login: &str) -> ApiResult<String> {
    let login = login.trim().to_ascii_lowercase();
    let ok = (3..=32).contains(&login.len())
        && login
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(login)
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "login must be 3 to 32 of a-z, 0-9, '_', '-', '.', '@'",
        ))
    }
}

impl Handler<Register> for UserManager {
    type Result = ResponseFuture<ApiResult<Tokens>>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        Box::pin(async move {
            let (store, cfg) = (&d.store, &d.cfg);
            let login = validate_login(&msg.login)?;
            if !(8..=PASSWORD_MAX).contains(&msg.password.len()) {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "password must be 8 to 256 bytes",
                ));
            }
            let name = if msg.name.trim().is_empty() {
                login.clone()
            } else {
                msg.name
            };
            let name = validate_name("name", &name, cfg.limits.name_chars)?;
            let password = msg.password;
            let hash = d
                .guard
                .hash(move || hash_password(&password))
                .await?
                .map_err(ApiError::internal)?;
            let role = if cfg
                .auth
                .admins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&login))
            {
                GlobalRole::Admin
            } else {
                GlobalRole::User
            };
            let user = UserRecord {
                login: Some(login),
                password_hash: Some(hash),
                ..new_account(name, role)
            };
            store
                .accounts
                .create_user(&user)
                .await
                .map_err(|e| match e {
                    parlor_store::StoreError::Conflict(_) => {
                        ApiError::new(ErrorCode::NameTaken, "that login is taken")
                    }
                    e => e.into(),
                })?;
            if let Some(login) = &user.login {
                d.guard.login_done(login, msg.from, true);
            }
            issue(&d, &user, None).await
        })
    }
}

/// Signs in with a login and password.
#[derive(Message)]
#[rtype(result = "ApiResult<Tokens>")]
pub(crate) struct Login {
    pub(crate) login: String,
    pub(crate) password: String,
    /// Where the attempt comes from, for the account's failure budget.
    pub(crate) from: Option<crate::guard::Addr>,
}

/// The longest password accepted: registration's limit, so that no login makes the pod
/// hash more than that.
const PASSWORD_MAX: usize = 256;

impl Handler<Login> for UserManager {
    type Result = ResponseFuture<ApiResult<Tokens>>;

    fn handle(&mut self, msg: Login, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        Box::pin(async move {
            let (store, metrics) = (&d.store, &d.metrics);
            let refused = || {
                metrics
                    .auth_failures
                    .with_label_values(&["bad_password"])
                    .inc();
                ApiError::new(ErrorCode::InvalidCredentials, "wrong login or password")
            };
            let login = msg.login.trim().to_ascii_lowercase();
            if msg.password.len() > PASSWORD_MAX || login.len() > 64 {
                return Err(ApiError::new(
                    ErrorCode::TooLong,
                    format!("a password is at most {PASSWORD_MAX} bytes"),
                ));
            }
            d.guard.login_allowed(&login, msg.from)?;
            let user = store.accounts.find_user_by_login(&login).await?;
            let hash = user.as_ref().and_then(|u| u.password_hash.clone());
            let password = msg.password;
            // Hash even for an unknown login so that timing does not reveal which logins exist.
            let ok = d
                .guard
                .hash(move || match hash {
                    Some(h) => verify_password(&password, &h),
                    None => {
                        let _ = hash_password(&password);
                        false
                    }
                })
                .await?;
            d.guard.login_done(&login, msg.from, ok);
            let user = user.filter(|_| ok).ok_or_else(refused)?;
            issue(&d, &user, None).await
        })
    }
}

/// Exchanges a refresh token for a new pair; a reused token is refused and its family revoked.
#[derive(Message)]
#[rtype(result = "ApiResult<Tokens>")]
pub(crate) struct Refresh {
    pub(crate) token: String,
}

impl Handler<Refresh> for UserManager {
    type Result = ResponseFuture<ApiResult<Tokens>>;

    fn handle(&mut self, msg: Refresh, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        Box::pin(async move {
            let (store, keys, metrics) = (&d.store, &d.keys, &d.metrics);
            let claims = keys.verify(&msg.token, TokenKind::Refresh).map_err(|e| {
                metrics.auth_failures.with_label_values(&[e.reason()]).inc();
                ApiError::new(e.code(), "refresh token rejected")
            })?;
            let record = match store.accounts.use_refresh(&claims.jti).await? {
                RefreshUse::Fresh(r) => r,
                RefreshUse::Reused(_) => {
                    metrics
                        .auth_failures
                        .with_label_values(&["refresh_reuse"])
                        .inc();
                    return Err(ApiError::new(
                        ErrorCode::TokenInvalid,
                        "refresh token was already used; sign in again",
                    ));
                }
                RefreshUse::Unknown => {
                    metrics
                        .auth_failures
                        .with_label_values(&["refresh_unknown"])
                        .inc();
                    return Err(ApiError::new(
                        ErrorCode::TokenInvalid,
                        "unknown refresh token",
                    ));
                }
            };
            let user = store
                .accounts
                .get_user(&record.user_id)
                .await?
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::TokenInvalid, "the account no longer exists")
                })?;
            issue(&d, &user, Some(record.family)).await
        })
    }
}

/// Uses up a refresh token without issuing another (sign-out). A token that does not verify,
/// or was used already, has nothing left to end.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct EndSession {
    pub(crate) token: String,
}

impl Handler<EndSession> for UserManager {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: EndSession, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        Box::pin(async move {
            if let Ok(claims) = d.keys.verify(&msg.token, TokenKind::Refresh) {
                if let Err(e) = d.store.accounts.use_refresh(&claims.jti).await {
                    tracing::warn!(error = %e, "sign-out could not use up its refresh token");
                }
            }
        })
    }
}

/// Issues a one-time login code for an account (admins only; checked by the caller).
#[derive(Message)]
#[rtype(result = "ApiResult<(String, i64, UserId)>")]
pub(crate) struct IssueMagic {
    pub(crate) user_id: Option<UserId>,
    pub(crate) login: Option<String>,
}

impl Handler<IssueMagic> for UserManager {
    type Result = ResponseFuture<ApiResult<(String, i64, UserId)>>;

    fn handle(&mut self, msg: IssueMagic, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        Box::pin(async move {
            let (store, cfg) = (&d.store, &d.cfg);
            let user = match (msg.user_id, msg.login) {
                (Some(id), _) => store.accounts.get_user(&id).await?,
                (None, Some(login)) => {
                    store
                        .accounts
                        .find_user_by_login(&login.to_ascii_lowercase())
                        .await?
                }
                (None, None) => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidArgument,
                        "give user_id or login",
                    ))
                }
            }
            .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "no such account"))?;
            let (code, expires) = magic_code(store, cfg, &user.id).await?;
            Ok((code, expires, user.id))
        })
    }
}

/// Records a new magic code for an account: the code, and when it expires.
async fn magic_code(store: &Store, cfg: &Config, user: &UserId) -> ApiResult<(String, i64)> {
    // A room code's 12 characters of a 32-letter alphabet: 60 bits, single use, short-lived.
    let code = parlor_core::new_room_code();
    let expires = now_ms() + (cfg.auth.magic_ttl_secs as i64) * 1000;
    store
        .accounts
        .put_magic(&MagicRecord {
            code_hash: hash_code(&code),
            user_id: user.clone(),
            expires_at_ms: expires,
        })
        .await?;
    Ok((code, expires))
}

/// How a third-party sign-in ends.
pub(crate) enum SignedIn {
    Tokens(Tokens),
    /// A magic code, for a browser sent on to `return_to`, which redeems it.
    Code(String),
}

/// Signs in with a verified third-party identity: the account that holds it, or a new
/// account holding it. With `link_to`, adds it to that account instead.
#[derive(Message)]
#[rtype(result = "ApiResult<SignedIn>")]
pub(crate) struct ExternalLogin {
    pub(crate) identity: String,
    pub(crate) name: Option<String>,
    pub(crate) link_to: Option<UserId>,
    /// Answer with a magic code rather than tokens.
    pub(crate) code: bool,
}

/// A display name from a provider's claims, made to fit the name rules.
fn external_name(name: Option<&str>, max_chars: usize) -> String {
    let name: String = name
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "player".to_owned()
    } else {
        name.to_owned()
    }
}

impl Handler<ExternalLogin> for UserManager {
    type Result = ResponseFuture<ApiResult<SignedIn>>;

    fn handle(&mut self, msg: ExternalLogin, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        Box::pin(async move {
            let (store, cfg) = (&d.store, &d.cfg);
            let taken = || {
                ApiError::new(
                    ErrorCode::Forbidden,
                    "that identity signs into another account",
                )
            };
            let holder = store.accounts.find_user_by_identity(&msg.identity).await?;
            let user = match (msg.link_to, holder) {
                (Some(id), Some(holder)) if holder.id != id => return Err(taken()),
                (_, Some(holder)) => holder,
                (Some(id), None) => {
                    let mut user =
                        store.accounts.get_user(&id).await?.ok_or_else(|| {
                            ApiError::new(ErrorCode::UserNotFound, "no such account")
                        })?;
                    user.identities.push(msg.identity);
                    store
                        .accounts
                        .update_user(&user)
                        .await
                        .map_err(|e| match e {
                            parlor_store::StoreError::Conflict(_) => taken(),
                            e => e.into(),
                        })?;
                    user
                }
                (None, None) => {
                    let name = external_name(msg.name.as_deref(), cfg.limits.name_chars);
                    let user = UserRecord {
                        identities: vec![msg.identity.clone()],
                        ..new_account(name, GlobalRole::User)
                    };
                    match store.accounts.create_user(&user).await {
                        Ok(()) => user,
                        // Another pod created it first, from a callback of the same person.
                        Err(parlor_store::StoreError::Conflict(_)) => store
                            .accounts
                            .find_user_by_identity(&msg.identity)
                            .await?
                            .ok_or_else(taken)?,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            if msg.code {
                Ok(SignedIn::Code(magic_code(store, cfg, &user.id).await?.0))
            } else {
                Ok(SignedIn::Tokens(issue(&d, &user, None).await?))
            }
        })
    }
}

/// Redeems a magic code for tokens.
#[derive(Message)]
#[rtype(result = "ApiResult<Tokens>")]
pub(crate) struct RedeemMagic {
    pub(crate) code: String,
}

impl Handler<RedeemMagic> for UserManager {
    type Result = ResponseFuture<ApiResult<Tokens>>;

    fn handle(&mut self, msg: RedeemMagic, _: &mut Context<Self>) -> Self::Result {
        let d = self.deps.clone();
        Box::pin(async move {
            let (store, metrics) = (&d.store, &d.metrics);
            let refused = |why: &'static str| {
                metrics.auth_failures.with_label_values(&[why]).inc();
                ApiError::new(ErrorCode::InvalidCredentials, "invalid or expired code")
            };
            let rec = store
                .accounts
                .take_magic(&hash_code(&msg.code))
                .await?
                .ok_or_else(|| refused("magic_unknown"))?;
            if rec.expires_at_ms < now_ms() {
                return Err(refused("magic_expired"));
            }
            let user = store
                .accounts
                .get_user(&rec.user_id)
                .await?
                .ok_or_else(|| refused("magic_unknown"))?;
            issue(&d, &user, None).await
        })
    }
}

/// Deletes an account; its tokens stop working at once on this pod.
#[derive(Message)]
#[rtype(result = "ApiResult<()>")]
pub(crate) struct DeleteUser {
    pub(crate) id: UserId,
}

impl Handler<DeleteUser> for UserManager {
    type Result = ResponseActFuture<Self, ApiResult<()>>;

    fn handle(&mut self, msg: DeleteUser, _: &mut Context<Self>) -> Self::Result {
        let store = self.deps.store.clone();
        let id = msg.id.clone();
        Box::pin(
            async move { store.accounts.delete_user(&msg.id).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    // Forget the account only once the store no longer has it, so that a
                    // lookup racing the delete cannot cache it again.
                    act.forget(id);
                    if res? {
                        Ok(())
                    } else {
                        Err(ApiError::new(ErrorCode::UserNotFound, "no such account"))
                    }
                }),
        )
    }
}
