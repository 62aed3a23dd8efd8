// A real OpenID Provider (oidc-provider, a certified implementation) on 127.0.0.1, for
// tests/it/oidc.rs. It signs everyone in without a form: the account is the request's
// `login_hint` (else "alice"), and consent is implied for the test's clients.
//
// Clients come from PARLOR_OIDC_CLIENTS, a JSON list of
//   { client_id, client_secret, redirect_uri, tamper? }
// A client with `tamper` gets its ID token changed after the provider made it, then
// signed again with the provider's own key, so that only the claim named fails:
//   aud, iss, exp, nonce: that claim is wrong; sig: signed with a key the provider never
//   published.
// Prints "issuer <url>" once it listens.
import http from 'node:http';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const clients = JSON.parse(process.env.PARLOR_OIDC_CLIENTS ?? '[]');
const tamper = Object.fromEntries(clients.filter((c) => c.tamper).map((c) => [c.client_id, c.tamper]));

const key = async (kid) => {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
};
const signing = await key('published');
const stranger = await key('published'); // same kid, other key: only the signature is wrong

const server = http.createServer();
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: [c.redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [signing] },
  cookies: { keys: ['parlor-test-cookie-key'] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub,
      name: `${sub[0].toUpperCase()}${sub.slice(1)} Example`,
      preferred_username: sub,
      email: `${sub}@id.example`,
      email_verified: true,
    }),
  }),
  // First-party clients: consent is implied, as for a game's own sign-in button.
  loadExistingGrant: async (ctx) => {
    const { client, session } = ctx.oidc;
    const id = session.grantIdFor(client.clientId);
    if (id) return ctx.oidc.provider.Grant.find(id);
    const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope('openid profile email');
    await grant.save();
    return grant;
  },
});

provider.use(async (ctx, next) => {
  await next();
  const how = tamper[ctx.oidc?.client?.clientId];
  if (!how || ctx.oidc.route !== 'token' || ctx.status !== 200 || !ctx.body?.id_token) return;
  const [head, body] = ctx.body.id_token.split('.');
  const header = JSON.parse(Buffer.from(head, 'base64url'));
  const claims = JSON.parse(Buffer.from(body, 'base64url'));
  const now = Math.floor(Date.now() / 1000);
  if (how === 'aud') claims.aud = 'another-client';
  if (how === 'iss') claims.iss = 'http://127.0.0.1:1';
  if (how === 'exp') Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
  if (how === 'nonce') claims.nonce = 'not-the-nonce';
  const jwk = how === 'sig' ? stranger : signing;
  const secret = await jose.importJWK(jwk, 'RS256');
  ctx.body = { ...ctx.body, id_token: await new jose.CompactSign(Buffer.from(JSON.stringify(claims))).setProtectedHeader(header).sign(secret) };
});

const callback = provider.callback();
server.on('request', async (req, res) => {
  if (!req.url.startsWith('/interaction/')) return callback(req, res);
  try {
    const { params, session } = await provider.interactionDetails(req, res);
    const accountId = session?.accountId ?? params.login_hint ?? 'alice';
    await provider.interactionFinished(req, res, { login: { accountId } }, { mergeWithLastSubmission: false });
  } catch (e) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end(String(e));
  }
});

// The test reads one line; a closed pipe later is not a reason to stop serving.
process.stdout.on('error', () => {});
process.stdout.write(`issuer ${issuer}\n`);
