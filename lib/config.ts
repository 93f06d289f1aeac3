import { join, resolve } from 'node:path';
import type { ControlSettings } from './compose.js';
import { controlSettings } from './control/settings.js';
import { ConfigError } from './errors.js';
import type { KeyCacheSettings } from './keys/key-cache.js';
import { keySettings } from './keys/key-settings.js';
import { PACKAGE_ROOT } from './package-root.js';

export const DEFAULT_PORT = 8270;
export const DEFAULT_ADDR = `http://127.0.0.1:${DEFAULT_PORT}`;
export const DEFAULT_TABLES = { secrets: 'coffer-secrets', audit: 'coffer-audit' } as const;

/** Settings of the local server, read once from the environment. */
export interface LocalSettings {
  readonly dataDir: string;
  readonly port: number;
  /** An existing DynamoDB (Local) endpoint; unset = start DynamoDB Local with the server. */
  readonly dynamodbEndpoint?: string;
  /** Cedar schema and policies: `COFFER_POLICY_DIR`, else the package's own `policies/`. */
  readonly policyDir: string;
  /** HTTPS instead of HTTP: `COFFER_TLS_CERT` and `COFFER_TLS_KEY`, with `COFFER_TLS_CLIENT_CA`. */
  readonly tls?: LocalTlsSettings;
  /**
   * The secrets and audit tables: `COFFER_SECRETS_TABLE` names another secrets table (a restored
   * copy, docs/operations.md); the installation id stays the data dir's, so its values still read.
   * Default: DEFAULT_TABLES.
   */
  readonly tables?: { readonly secrets: string; readonly audit: string };
  /**
   * The branch key cache: `COFFER_KEY_CACHE_SECONDS` (default 300) and `COFFER_KEY_CACHE_USES`
   * (default 100000); `0` in either disables it (docs/keys.md).
   */
  readonly keyCache?: KeyCacheSettings;
  /** Seconds between re-wrap passes: `COFFER_REWRAP_EVERY_SECONDS` (default a week; `0`: never). */
  readonly rewrapEverySeconds?: number;
  /**
   * Freshness bounds of pushed policy sets and revocations, and whether a push needs a second
   * admin (`COFFER_POLICY_FRESHNESS_SECONDS`, `COFFER_REVOCATION_FRESHNESS_SECONDS`,
   * `COFFER_POLICY_APPROVAL`). Default: 30 s, 10 s, no approval.
   */
  readonly control?: ControlSettings;
}

/** Files (absolute paths) of the local server's TLS listener; read at start. */
export interface LocalTlsSettings {
  /** The server's certificate chain (PEM). */
  readonly cert: string;
  /** Its private key (PEM). */
  readonly key: string;
  /**
   * The CA bundle (PEM) client certificates are verified against. Set: the server asks every
   * connection for a certificate but does not require one (callers without one use bearer tokens).
   */
  readonly clientCa?: string;
}

/**
 * The policies shipped with Coffer, found from the package (not the cwd, which may be anywhere),
 * whether this runs from the source or from the build under dist/.
 */
export const DEFAULT_POLICY_DIR = join(PACKAGE_ROOT, 'policies');

export function localSettings(env: NodeJS.ProcessEnv, cwd = process.cwd()): LocalSettings {
  const dataDir = resolve(cwd, env.COFFER_DATA_DIR || '.coffer');
  const rawPort = env.COFFER_PORT;
  let port = DEFAULT_PORT;
  if (rawPort !== undefined && rawPort !== '') {
    if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) < 1 || Number(rawPort) > 65535) {
      throw new ConfigError(`COFFER_PORT must be a port number (1-65535), got "${rawPort.slice(0, 20)}"`);
    }
    port = Number(rawPort);
  }
  const endpoint = env.COFFER_DYNAMODB_ENDPOINT;
  if (endpoint !== undefined && endpoint !== '') {
    try {
      const url = new URL(endpoint);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('protocol');
    } catch {
      throw new ConfigError('COFFER_DYNAMODB_ENDPOINT must be an http(s) URL');
    }
  }
  const policyDir = env.COFFER_POLICY_DIR ? resolve(cwd, env.COFFER_POLICY_DIR) : DEFAULT_POLICY_DIR;
  const tls = tlsSettings(env, cwd);
  const secrets = env.COFFER_SECRETS_TABLE || DEFAULT_TABLES.secrets;
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(secrets))
    throw new ConfigError('COFFER_SECRETS_TABLE must be a DynamoDB table name');
  const tables = { ...DEFAULT_TABLES, secrets };
  const control = controlSettings(env);
  return {
    dataDir,
    port,
    ...(endpoint ? { dynamodbEndpoint: endpoint } : {}),
    policyDir,
    tables,
    ...(tls ? { tls } : {}),
    ...keySettings(env),
    ...(Object.keys(control).length > 0 ? { control } : {}),
  };
}

/** COFFER_TLS_*: both of certificate and key, or neither; a client CA only with them. */
function tlsSettings(env: NodeJS.ProcessEnv, cwd: string): LocalTlsSettings | undefined {
  const cert = env.COFFER_TLS_CERT || undefined;
  const key = env.COFFER_TLS_KEY || undefined;
  const clientCa = env.COFFER_TLS_CLIENT_CA || undefined;
  if (cert === undefined && key === undefined) {
    if (clientCa !== undefined) {
      throw new ConfigError(
        'COFFER_TLS_CLIENT_CA needs COFFER_TLS_CERT and COFFER_TLS_KEY (client certificates need HTTPS)',
      );
    }
    return undefined;
  }
  if (cert === undefined || key === undefined) {
    throw new ConfigError(
      `${cert === undefined ? 'COFFER_TLS_KEY' : 'COFFER_TLS_CERT'} is set without ${cert === undefined ? 'COFFER_TLS_CERT' : 'COFFER_TLS_KEY'}: HTTPS needs both the certificate and its key`,
    );
  }
  return {
    cert: resolve(cwd, cert),
    key: resolve(cwd, key),
    ...(clientCa !== undefined ? { clientCa: resolve(cwd, clientCa) } : {}),
  };
}
