// A real third-party OAuth 2.0 / OpenID Connect authorization server for
// Tether's end-to-end tests: panva's oidc-provider, configured strictly:
// PKCE (S256) required, refresh tokens rotated on every use, and the reuse of
// a rotated refresh token revoking the whole grant (oidc-provider's
// behaviour when `rotateRefreshToken` is on).
//
// usage: node server.mjs PORT REDIRECT_URI
// Prints "oidc-provider listening on http://127.0.0.1:PORT" when ready.
//
// Test-only routes (not part of oidc-provider):
//   POST /_test/revoke-all   forget every grant and token (an admin revoking access)
//   GET  /_test/stats        {"refreshes": n, "reuse_detected": n, "token_requests": n}
//                            (token_requests: every POST to the token endpoint)
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const redirectUri = process.argv[3];
if (!port || !redirectUri) {
  console.error('usage: node server.mjs PORT REDIRECT_URI');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

// An in-memory adapter we can inspect and clear.
const records = new Map();
const byGrant = new Map();
const byUid = new Map();
class MemoryAdapter {
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload) {
    const key = this.key(id);
    records.set(key, payload);
    if (payload.grantId) {
      if (!byGrant.has(payload.grantId)) byGrant.set(payload.grantId, new Set());
      byGrant.get(payload.grantId).add(key);
    }
    if (payload.uid) byUid.set(payload.uid, id);
  }
  async find(id) { return records.get(this.key(id)); }
  async findByUid(uid) { const id = byUid.get(uid); return id && this.find(id); }
  async findByUserCode() { return undefined; }
  async consume(id) {
    const p = records.get(this.key(id));
    if (p) p.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id) { records.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const key of byGrant.get(grantId) ?? []) records.delete(key);
    byGrant.delete(grantId);
  }
}

const stats = { refreshes: 0, reuse_detected: 0, token_requests: 0 };

const provider = new Provider(issuer, {
  adapter: MemoryAdapter,
  clients: [{
    client_id: 'tether',
    client_secret: 'tether-oidc-test-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access'],
  features: { revocation: { enabled: true }, devInteractions: { enabled: true } },
  rotateRefreshToken: true,
  ttl: { AccessToken: 120, AuthorizationCode: 60, RefreshToken: 86400, Grant: 86400, Interaction: 600, Session: 86400 },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});
provider.proxy = false;

provider.on('grant.success', (ctx) => {
  if (ctx.oidc.params.grant_type === 'refresh_token') stats.refreshes += 1;
});
provider.on('grant.error', (ctx, err) => {
  if (ctx.oidc?.params?.grant_type === 'refresh_token') console.error(`refresh refused: ${err.error}: ${err.error_description}`);
});
provider.on('grant.revoked', () => { stats.reuse_detected += 1; });

provider.use(async (ctx, next) => {
  if (ctx.path === '/_test/revoke-all' && ctx.method === 'POST') {
    for (const key of [...records.keys()]) {
      if (/^(Grant|RefreshToken|AccessToken|AuthorizationCode):/.test(key)) records.delete(key);
    }
    byGrant.clear();
    ctx.body = { revoked: true };
    return;
  }
  if (ctx.path === '/_test/stats') {
    ctx.body = stats;
    return;
  }
  if (ctx.path === '/token' && ctx.method === 'POST') stats.token_requests += 1;
  await next();
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
