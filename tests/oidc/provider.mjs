// A real OpenID Connect provider on loopback for the tests (npm package oidc-provider).
// Usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI ACCOUNTS_JSON
// ACCOUNTS_JSON maps login names to their groups claim, e.g. {"carol": ["p-2026-002"]}.
// Logins go through the provider's own (development) login and consent forms.
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri, accountsJson] = process.argv.slice(2);
const accounts = JSON.parse(accountsJson);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'groups'],
  async findAccount(ctx, id) {
    if (!(id in accounts)) return undefined;  // an unknown login fails, as at a real IdP
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id, groups: accounts[id] };
      },
    };
  },
  cookies: { keys: [clientSecret] },
  pkce: { required: () => false },
});
provider.proxy = true;
provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
