// A real third-party OpenID Connect provider (panva's oidc-provider) for
// Tether's single sign-on test (tests/sso.rs): one static confidential
// client whose redirect URI is the hub's /auth/sso/callback, PKCE required,
// and accounts that sign in through oidc-provider's development
// interactions by their account id (any password):
//
//   alice  Alice@Example.com, email_verified true   (a hub user, other case)
//   bob    bob@example.com,   email_verified false  (a hub user, unverified)
//   carol  carol@elsewhere.example, verified         (no such hub user)
//   dave   dave@example.com,  verified              (a deactivated hub user)
//
// The email claims come from the userinfo endpoint (oidc-provider keeps
// scope claims out of the ID token when an access token is issued,
// `conformIdTokenClaims`).
//
// usage: node sso.mjs PORT REDIRECT_URI CLIENT_SECRET
// Prints "oidc-provider listening on http://127.0.0.1:PORT" when ready.
import Provider from 'oidc-provider';

const [port, redirectUri, secret] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
if (!port || !redirectUri || !secret) {
  console.error('usage: node sso.mjs PORT REDIRECT_URI CLIENT_SECRET');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const accounts = {
  alice: { email: 'Alice@Example.com', email_verified: true, name: 'Alice' },
  bob: { email: 'bob@example.com', email_verified: false, name: 'Bob' },
  carol: { email: 'carol@elsewhere.example', email_verified: true, name: 'Carol' },
  dave: { email: 'dave@example.com', email_verified: true, name: 'Dave' },
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'tether-sso',
    client_secret: secret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  features: { devInteractions: { enabled: true } },
  findAccount: async (ctx, sub) => {
    const a = accounts[sub];
    if (!a) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...a }) };
  },
});
provider.proxy = false;

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
