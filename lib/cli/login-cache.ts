import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type * as oidc from 'openid-client';
import type * as zod from 'zod';
import { CofferClientError } from '../../packages/client/src/errors.js';

/** Refresh this long before the access token expires, so it does not die in flight. */
const REFRESH_MARGIN_SECONDS = 30;

/** What `coffer login` keeps: enough to send the token and to refresh it. */
export interface LoginRecord {
  readonly version: 1;
  /** The Coffer server the login is for: the token is only ever sent there. */
  readonly server: string;
  readonly issuer: string;
  readonly clientId: string;
  readonly scope: string;
  readonly resource?: string;
  readonly allowHttpLoopback: boolean;
  readonly accessToken: string;
  readonly refreshToken?: string;
  /** Epoch seconds. */
  readonly expiresAt?: number;
}

/**
 * The cache file's schema, built on first use: zod is loaded only when there is a cache to read,
 * not on every CLI start.
 */
let recordSchema: ReturnType<typeof recordSchemaOf> | undefined;
async function cacheSchema(): Promise<ReturnType<typeof recordSchemaOf>> {
  recordSchema ??= recordSchemaOf((await import('zod')).z);
  return recordSchema;
}

function recordSchemaOf(z: typeof zod.z) {
  return z.strictObject({
    version: z.literal(1),
    server: z.string().min(1).max(2048),
    issuer: z.string().min(1).max(2048),
    clientId: z.string().min(1).max(256),
    scope: z.string().max(2048),
    resource: z.string().min(1).max(2048).optional(),
    allowHttpLoopback: z.boolean(),
    accessToken: z
      .string()
      .min(1)
      .max(16 * 1024),
    refreshToken: z
      .string()
      .min(1)
      .max(16 * 1024)
      .optional(),
    expiresAt: z.number().int().positive().optional(),
  });
}

type Env = Readonly<Record<string, string | undefined>>;

/** Server addresses compare without trailing slashes. */
export const normalizeServer = (url: string) => url.trim().replace(/\/+$/, '');

/**
 * The login cache file: `COFFER_LOGIN_CACHE`, else `$XDG_CONFIG_HOME/coffer/login.json`, else
 * `$HOME/.config/coffer/login.json`; undefined when the environment names no home.
 */
export function loginCachePath(env: Env): string | undefined {
  if (env.COFFER_LOGIN_CACHE) return env.COFFER_LOGIN_CACHE;
  if (env.XDG_CONFIG_HOME) return join(env.XDG_CONFIG_HOME, 'coffer', 'login.json');
  if (env.HOME) return join(env.HOME, '.config', 'coffer', 'login.json');
  return undefined;
}

/** The cached login, or undefined when there is none or it is unreadable (a fresh login fixes it). */
export async function readLoginCache(path: string): Promise<LoginRecord | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed = (await cacheSchema()).safeParse(JSON.parse(text));
    return parsed.success ? (parsed.data as LoginRecord) : undefined;
  } catch {
    return undefined;
  }
}

export interface WriteCacheOptions {
  /**
   * The directory is Coffer's own (the default `.../coffer/`): it is made 0700 even if it already
   * existed with a wider mode. A directory named through `COFFER_LOGIN_CACHE` is the user's
   * choice and is only created 0700, never changed.
   */
  readonly ownDirectory?: boolean;
}

/** Writes the cache 0600 (directory 0700) through a temp file and a rename, so it is never half written. */
export async function writeLoginCache(
  path: string,
  record: LoginRecord,
  options: WriteCacheOptions = {},
): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (options.ownDirectory) await chmod(dir, 0o700);
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    await chmod(temp, 0o600);
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** True when the cache lives in Coffer's own directory (no `COFFER_LOGIN_CACHE`). */
export const ownsCacheDirectory = (env: Env): boolean => !env.COFFER_LOGIN_CACHE;

export async function deleteLoginCache(path: string): Promise<boolean> {
  try {
    await rm(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

export interface CacheTokenOptions {
  /** Epoch seconds (tests). */
  readonly now?: number;
}

/**
 * The access token of the login cache for `server`, refreshed first when it is (about to be)
 * expired and a refresh token exists. Undefined when there is no cache or it is for another server.
 * An expired login that cannot be refreshed is an error, rather than a silent switch to another
 * identity.
 */
export async function loginCacheToken(
  env: Env,
  server: string,
  options: CacheTokenOptions = {},
): Promise<string | undefined> {
  const path = loginCachePath(env);
  if (!path) return undefined;
  const record = await readLoginCache(path);
  if (!record || normalizeServer(record.server) !== normalizeServer(server)) return undefined;
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (record.expiresAt === undefined || record.expiresAt - REFRESH_MARGIN_SECONDS > now)
    return record.accessToken;
  if (!record.refreshToken) {
    throw new CofferClientError('unauthenticated', 401, 'your login has expired; run "coffer login" again');
  }
  // openid-client is loaded only to refresh: a valid cached token needs none of it.
  const { clientConfiguration, expiryOf, oauthReason, refreshTokenGrant } = await import('./oidc-client.js');
  let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;
  try {
    const config = await clientConfiguration(record.issuer, record.clientId, record.allowHttpLoopback);
    tokens = await refreshTokenGrant(
      config,
      record.refreshToken,
      record.resource ? { resource: record.resource } : undefined,
    );
  } catch (err) {
    throw new CofferClientError(
      'unauthenticated',
      401,
      `your login has expired and could not be refreshed (${oauthReason(err)}); run "coffer login" again`,
    );
  }
  // The answer's own expires_in, counted from `now`: expiresIn() counts down from when the answer
  // arrived, so a slow machine would move the expiry by a second.
  const expiresAt = expiryOf(tokens.access_token, tokens.expires_in, now);
  const refreshToken = tokens.refresh_token ?? record.refreshToken;
  // The old expiry belongs to the old token: when the new one's is unknown, none is kept.
  const { expiresAt: _old, ...rest } = record;
  await writeLoginCache(
    path,
    {
      ...rest,
      accessToken: tokens.access_token,
      refreshToken,
      ...(expiresAt !== undefined ? { expiresAt } : {}),
    },
    { ownDirectory: ownsCacheDirectory(env) },
  );
  return tokens.access_token;
}
