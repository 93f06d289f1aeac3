import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidArgumentError } from 'commander';
import * as oidc from 'openid-client';
import { CofferClientError } from '../../../packages/client/src/errors.js';
import { DEFAULT_ADDR } from '../../config.js';
import { type IssuerConfig, loadConfig } from '../../config-file.js';
import type { CliIo } from '../io.js';
import {
  deleteLoginCache,
  type LoginRecord,
  loginCachePath,
  normalizeServer,
  ownsCacheDirectory,
  writeLoginCache,
} from '../login-cache.js';
import { clientConfiguration, expiryOf, oauthReason } from '../oidc-client.js';

/** How long the browser flow waits for the redirect. */
const BROWSER_TIMEOUT_MS = 5 * 60_000;
const DEFAULT_SCOPES = ['openid', 'offline_access'];

/** The options of `coffer login`. */
export interface LoginOptions {
  issuer?: string;
  clientId?: string;
  scope?: string;
  resource?: string;
  browser?: boolean;
  device?: boolean;
  port?: number;
  open: boolean;
  allowHttpLoopback?: boolean;
}

interface LoginTarget {
  issuer: string;
  clientId: string;
  scope: string;
  resource?: string;
  allowHttpLoopback: boolean;
}

/**
 * Where to log in: flags, else `COFFER_LOGIN_*`, else the `login` block of an issuer in
 * COFFER_CONFIG (`--issuer <alias>`, or the only issuer that has one).
 */
async function resolveTarget(opts: LoginOptions, io: CliIo): Promise<LoginTarget> {
  const named = opts.issuer ?? io.env.COFFER_LOGIN_ISSUER;
  let fromConfig: IssuerConfig | undefined;
  let issuer: string | undefined;
  if (named && /^https?:\/\//i.test(named)) {
    issuer = named;
  } else {
    const config = await loadConfig(io.env, io.cwd);
    const candidates = config.issuers.filter((i) => i.login && (named === undefined || i.alias === named));
    if (candidates.length !== 1) {
      throw new InvalidArgumentError(
        named === undefined
          ? 'name the issuer: --issuer <URL or alias from COFFER_CONFIG> (or COFFER_LOGIN_ISSUER)'
          : `no issuer "${named.slice(0, 32)}" with a login block in COFFER_CONFIG`,
      );
    }
    fromConfig = candidates[0] as IssuerConfig;
    issuer = fromConfig.issuer;
  }
  const clientId = opts.clientId ?? io.env.COFFER_LOGIN_CLIENT_ID ?? fromConfig?.login?.clientId;
  if (!clientId)
    throw new InvalidArgumentError('name the OAuth client: --client-id <id> (or COFFER_LOGIN_CLIENT_ID)');
  const scope =
    opts.scope ?? io.env.COFFER_LOGIN_SCOPE ?? (fromConfig?.login?.scopes ?? DEFAULT_SCOPES).join(' ');
  const resource = opts.resource ?? io.env.COFFER_LOGIN_RESOURCE ?? fromConfig?.login?.resource;
  return {
    issuer,
    clientId,
    scope,
    ...(resource ? { resource } : {}),
    allowHttpLoopback: Boolean(opts.allowHttpLoopback || fromConfig?.allowHttpLoopback),
  };
}

type Tokens = oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;

async function deviceFlow(config: oidc.Configuration, target: LoginTarget, io: CliIo): Promise<Tokens> {
  const resource: Record<string, string> = target.resource ? { resource: target.resource } : {};
  const started = await oidc.initiateDeviceAuthorization(config, { scope: target.scope, ...resource });
  io.stderr.write(
    `To sign in, open ${started.verification_uri} and enter the code ${started.user_code}\n` +
      (started.verification_uri_complete ? `(or open ${started.verification_uri_complete})\n` : '') +
      'Waiting for you to approve…\n',
  );
  return oidc.pollDeviceAuthorizationGrant(config, started, resource);
}

/** Starts the browser (best effort: the URL is printed anyway). */
function openBrowser(url: string): void {
  const [command, args] =
    process.platform === 'darwin'
      ? ['open', [url]]
      : process.platform === 'win32'
        ? ['cmd', ['/c', 'start', '""', url]]
        : ['xdg-open', [url]];
  try {
    const child = spawn(command as string, args as string[], { stdio: 'ignore', detached: true });
    child.on('error', () => {});
    child.unref();
  } catch {
    // No browser: the user opens the printed URL.
  }
}

/**
 * Authorization code + PKCE (S256) with a redirect to a loopback port (RFC 8252): the IdP sends
 * the browser to http://127.0.0.1:<port>/callback, where the code is exchanged.
 */
async function browserFlow(
  config: oidc.Configuration,
  target: LoginTarget,
  opts: LoginOptions,
  io: CliIo,
): Promise<Tokens> {
  const verifier = oidc.randomPKCECodeVerifier();
  const challenge = await oidc.calculatePKCECodeChallenge(verifier);
  const state = oidc.randomState();
  const resource: Record<string, string> = target.resource ? { resource: target.resource } : {};

  let settle: { resolve: (t: Tokens) => void; reject: (e: unknown) => void } | undefined;
  const result = new Promise<Tokens>((resolve, reject) => {
    settle = { resolve, reject };
  });
  let redirectUri = '';
  let done = false;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', redirectUri);
    if (req.method !== 'GET' || url.pathname !== '/callback' || done) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    done = true;
    oidc
      .authorizationCodeGrant(config, url, { pkceCodeVerifier: verifier, expectedState: state }, resource)
      .then(
        (tokens) => {
          res
            .writeHead(200, { 'content-type': 'text/plain' })
            .end('Signed in to Coffer. You can close this tab.\n');
          settle?.resolve(tokens);
        },
        (err) => {
          res.writeHead(400, { 'content-type': 'text/plain' }).end('Sign-in failed. See the terminal.\n');
          settle?.reject(err);
        },
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const timer = setTimeout(
    () => settle?.reject(new Error('timed out waiting for the browser')),
    BROWSER_TIMEOUT_MS,
  );
  try {
    redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: target.scope,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state,
      // Many IdPs issue a refresh token for offline_access only after an explicit consent.
      ...(target.scope.split(' ').includes('offline_access') ? { prompt: 'consent' } : {}),
      ...resource,
    });
    io.stderr.write(`To sign in, open this URL in a browser:\n${url.href}\nWaiting for the browser…\n`);
    if (opts.open) openBrowser(url.href);
    return await result;
  } finally {
    clearTimeout(timer);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** `coffer login`: signs in with the IdP and caches the token (and refresh token) 0600. */
export async function login(io: CliIo, opts: LoginOptions, json: boolean): Promise<void> {
  if (opts.browser && opts.device) throw new InvalidArgumentError('choose one of --browser and --device');
  const path = loginCachePath(io.env);
  if (!path)
    throw new InvalidArgumentError('set HOME, XDG_CONFIG_HOME or COFFER_LOGIN_CACHE for the login cache');
  const target = await resolveTarget(opts, io);
  const config = await clientConfiguration(target.issuer, target.clientId, target.allowHttpLoopback);
  const canDevice = typeof config.serverMetadata().device_authorization_endpoint === 'string';
  if (opts.device && !canDevice) {
    throw new CofferClientError('login_failed', 0, 'this IdP offers no device flow; use --browser');
  }
  const useBrowser = opts.browser === true || !canDevice;
  let tokens: Tokens;
  try {
    tokens = useBrowser ? await browserFlow(config, target, opts, io) : await deviceFlow(config, target, io);
  } catch (err) {
    throw new CofferClientError('login_failed', 0, `sign-in failed: ${oauthReason(err)}`);
  }
  const now = Math.floor(Date.now() / 1000);
  // The answer's own expires_in, counted from `now`: expiresIn() counts down from when the answer
  // arrived, so a slow machine would move the expiry by a second.
  const expiresAt = expiryOf(tokens.access_token, tokens.expires_in, now);
  const server = normalizeServer(io.env.COFFER_ADDR || DEFAULT_ADDR);
  const record: LoginRecord = {
    version: 1,
    server,
    issuer: target.issuer,
    clientId: target.clientId,
    scope: target.scope,
    ...(target.resource ? { resource: target.resource } : {}),
    allowHttpLoopback: target.allowHttpLoopback,
    accessToken: tokens.access_token,
    ...(tokens.refresh_token ? { refreshToken: tokens.refresh_token } : {}),
    ...(expiresAt !== undefined ? { expiresAt } : {}),
  };
  await writeLoginCache(path, record, { ownDirectory: ownsCacheDirectory(io.env) });
  const summary = {
    server,
    issuer: target.issuer,
    cache: path,
    refreshable: record.refreshToken !== undefined,
    ...(expiresAt !== undefined ? { expiresAt: new Date(expiresAt * 1000).toISOString() } : {}),
  };
  if (json) io.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  else {
    io.stderr.write(
      `Signed in for ${server}; token cached in ${path}` +
        (summary.expiresAt
          ? ` (expires ${summary.expiresAt}${summary.refreshable ? ', refreshable' : ''})`
          : '') +
        '\n',
    );
  }
}

/** `coffer logout`: deletes the cached login. */
export async function logout(io: CliIo, json: boolean): Promise<void> {
  const path = loginCachePath(io.env);
  const removed = path ? await deleteLoginCache(path) : false;
  if (json) io.stdout.write(`${JSON.stringify({ removed })}\n`);
  else io.stderr.write(removed ? `Removed ${path}\n` : 'No cached login\n');
}
