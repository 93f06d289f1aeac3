import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider from 'oidc-provider';
import * as oidcClient from 'openid-client';

/** The public client of the Coffer CLI at the test IdP (device flow, code + PKCE, refresh). */
export const CLI_CLIENT_ID = 'coffer-cli';
/** The scope the test resource server (Coffer) grants. */
export const COFFER_SCOPE = 'coffer';

export interface TestIdpOptions {
  /** The `aud` of the JWT access tokens (default `coffer-api`). */
  readonly audience?: string;
  /** The resource indicator that maps to `audience` (default `https://coffer.test/api`). */
  readonly resource?: string;
  /** Groups the IdP puts in the `groups` claim, by account id or machine client id. */
  readonly groups?: Readonly<Record<string, readonly string[]>>;
  /** More claims for the access token, by account id or client id. */
  readonly claims?: Readonly<Record<string, Record<string, unknown>>>;
  /** Machine clients (client credentials); secrets are random per run. */
  readonly machineClients?: readonly string[];
  /** Access token lifetime in seconds (default 600). */
  readonly accessTokenTtl?: number;
  /**
   * Exact token shapes by machine client id: the JWT access token's payload becomes these claims
   * plus the IdP's own `iss`, `aud`, `iat`, `nbf`, `exp` and `jti` (no `client_id`, `scope` or
   * `groups`), so tests get tokens shaped like GitHub Actions', GitLab's or Kubernetes'.
   */
  readonly tokenShapes?: Readonly<Record<string, Record<string, unknown>>>;
}

export interface TestIdp {
  readonly issuer: string;
  readonly audience: string;
  readonly resource: string;
  /** The IdP's signing key (RS256), so tests can forge tokens "by the IdP" with any claims. */
  readonly signingKey: { readonly privateJwk: JWK; readonly publicJwk: JWK; readonly kid: string };
  /** Requests seen, by path. */
  readonly requests: string[];
  countRequests(path: string): number;
  /** The random client secret of a machine client. */
  secretOf(clientId: string): string;
  /** Client credentials grant through openid-client; returns the access token. */
  clientCredentialsToken(clientId: string): Promise<string>;
  /** Does in a "browser" what a person does to approve a device code, as `account`. */
  approveDevice(userCode: string, account: string): Promise<void>;
  /**
   * Follows an authorization URL as `account` through login and consent, up to the redirect back
   * to the client; fetches that redirect (the CLI's loopback server) and returns its response.
   */
  browse(authorizationUrl: string, account: string): Promise<Response>;
  /** An openid-client configuration for a client of this IdP (allowInsecureRequests: loopback http, tests only). */
  clientConfig(clientId: string, secret?: string): Promise<oidcClient.Configuration>;
  close(): Promise<void>;
}

/** A tiny cookie jar: enough for oidc-provider's session and interaction cookies. */
class CookieJar {
  private readonly cookies = new Map<string, string>();
  store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = (pair ?? '').indexOf('=');
      if (at > 0)
        this.cookies.set((pair as string).slice(0, at).trim(), (pair as string).slice(at + 1).trim());
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

/**
 * Starts oidc-provider 9 on 127.0.0.1 as a real identity provider: JWT access tokens (RFC 9068)
 * through resource indicators, client credentials, device flow, code + PKCE for a native client,
 * refresh tokens. Interactions (login, consent) are answered by the test: the "browser" sends the
 * account to log in as in an `x-test-account` header.
 */
export async function startTestIdp(options: TestIdpOptions = {}): Promise<TestIdp> {
  const audience = options.audience ?? 'coffer-api';
  const resource = options.resource ?? 'https://coffer.test/api';
  const requests: string[] = [];
  const secrets = new Map((options.machineClients ?? []).map((id) => [id, randomBytes(24).toString('hex')]));

  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = `idp-${randomBytes(4).toString('hex')}`;
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
  const server: Server = createServer((req, res) => {
    requests.push((req.url ?? '').split('?')[0] as string);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const subjectOf = (token: { accountId?: string; clientId?: string }) =>
    token.accountId ?? token.clientId ?? '';

  const provider = new Provider(issuer, {
    clients: [
      ...[...secrets].map(([client_id, client_secret]) => ({
        client_id,
        client_secret,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      })),
      {
        client_id: CLI_CLIENT_ID,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback'],
      },
    ],
    jwks: { keys: [privateJwk] },
    formats: {
      customizers: {
        jwt: async (
          _ctx: unknown,
          token: { clientId?: string },
          jwt: { payload: Record<string, unknown> },
        ) => {
          const shape = token.clientId ? options.tokenShapes?.[token.clientId] : undefined;
          if (!shape) return;
          const { iss, aud, iat, exp, jti } = jwt.payload;
          jwt.payload = { ...shape, iss, aud, iat, nbf: iat, exp, jti };
        },
      },
    },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    scopes: ['openid', 'offline_access', COFFER_SCOPE],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx: { body: string }, form: string) => {
          ctx.body = `<!doctype html><html><body>${form}</body></html>`;
        },
        successSource: (ctx: { body: string }) => {
          ctx.body = '<!doctype html><html><body>Sign-in success</body></html>';
        },
      },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, indicator: string) => {
          if (indicator !== resource) throw new Error('unknown resource');
          return {
            scope: COFFER_SCOPE,
            audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: options.accessTokenTtl ?? 600,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    findAccount: async (_ctx: unknown, sub: string) => ({ accountId: sub, claims: async () => ({ sub }) }),
    extraTokenClaims: async (_ctx: unknown, token: { accountId?: string; clientId?: string }) => {
      const who = subjectOf(token);
      return { groups: [...(options.groups?.[who] ?? [])], ...(options.claims?.[who] ?? {}) };
    },
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(t: string): boolean }) =>
      client.grantTypeAllowed('refresh_token'),
    pkce: { required: () => true },
    ttl: {
      AccessToken: 600,
      ClientCredentials: 600,
      DeviceCode: 600,
      Grant: 3600,
      IdToken: 600,
      Interaction: 600,
      RefreshToken: 3600,
      Session: 3600,
    },
  });
  // oidc-provider logs server errors through Koa's "error" event: keep test output readable.
  provider.on('server_error', () => {});

  const providerCallback = provider.callback();

  /** Login as the account the "browser" names; consent to whatever is asked. */
  async function interaction(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const account = req.headers['x-test-account'];
    if (typeof account !== 'string') {
      res.writeHead(400).end('x-test-account header missing');
      return;
    }
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === 'login') {
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: account } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    const missing = details.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    const grant = details.grantId
      ? ((await provider.Grant.find(details.grantId)) as NonNullable<
          Awaited<ReturnType<typeof provider.Grant.find>>
        >)
      : new provider.Grant({
          accountId: details.session?.accountId ?? account,
          clientId: String(details.params.client_id),
        });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    await provider.interactionFinished(
      req,
      res,
      { consent: { grantId: await grant.save() } },
      { mergeWithLastSubmission: true },
    );
  }

  handler = (req, res) => {
    if ((req.url ?? '').startsWith('/interaction/')) {
      interaction(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500).end('interaction failed');
      });
      return;
    }
    providerCallback(req, res);
  };

  /** Fetches with the jar and the account header, following redirects on the IdP only. */
  async function walk(start: string, account: string, jar: CookieJar, init?: RequestInit): Promise<Response> {
    let url = start;
    let request: RequestInit = init ?? {};
    for (let hops = 0; hops < 20; hops++) {
      const res = await fetch(url, {
        ...request,
        redirect: 'manual',
        headers: {
          ...(request.headers as Record<string, string>),
          cookie: jar.header(),
          'x-test-account': account,
        },
      });
      jar.store(res);
      const location = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || !location) return res;
      await res.arrayBuffer();
      const next = new URL(location, url);
      if (next.origin !== issuer) {
        // Leaving the IdP: the client's redirect URI. Fetched plainly, like a browser would.
        return fetch(next);
      }
      url = next.href;
      request = {};
    }
    throw new Error('too many redirects');
  }

  const secretOf = (clientId: string) => {
    const secret = secrets.get(clientId);
    if (!secret) throw new Error(`no machine client ${clientId}`);
    return secret;
  };

  const clientConfig = async (clientId: string, secret?: string) =>
    oidcClient.discovery(new URL(issuer), clientId, secret, secret ? undefined : oidcClient.None(), {
      execute: [oidcClient.allowInsecureRequests],
    });

  return {
    issuer,
    audience,
    resource,
    signingKey: { privateJwk, publicJwk, kid },
    requests,
    countRequests: (path) => requests.filter((p) => p === path).length,
    secretOf,
    async clientCredentialsToken(clientId) {
      const config = await clientConfig(clientId, secretOf(clientId));
      const tokens = await oidcClient.clientCredentialsGrant(config, { scope: COFFER_SCOPE, resource });
      return tokens.access_token;
    },
    async approveDevice(userCode, account) {
      const jar = new CookieJar();
      const form = await walk(`${issuer}/device`, account, jar);
      const html = await form.text();
      const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1];
      if (!xsrf) throw new Error('no xsrf token on the device page');
      const done = await walk(`${issuer}/device`, account, jar, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ xsrf, user_code: userCode, confirm: 'yes' }).toString(),
      });
      const text = await done.text();
      if (done.status !== 200 || !/success/i.test(text))
        throw new Error(`device approval failed (${done.status})`);
    },
    async browse(authorizationUrl, account) {
      return walk(authorizationUrl, account, new CookieJar());
    },
    clientConfig,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
