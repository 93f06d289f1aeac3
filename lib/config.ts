import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';

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
  /**
   * The secrets and audit tables: `COFFER_SECRETS_TABLE` names another secrets table (a restored
   * copy, docs/operations.md); the installation id stays the data dir's, so its values still read.
   * Default: DEFAULT_TABLES.
   */
  readonly tables?: { readonly secrets: string; readonly audit: string };
}

/** The policies shipped with Coffer, found from this file (not the cwd, which may be anywhere). */
export const DEFAULT_POLICY_DIR = fileURLToPath(new URL('../policies', import.meta.url));

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
  const secrets = env.COFFER_SECRETS_TABLE || DEFAULT_TABLES.secrets;
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(secrets))
    throw new ConfigError('COFFER_SECRETS_TABLE must be a DynamoDB table name');
  const tables = { ...DEFAULT_TABLES, secrets };
  return { dataDir, port, ...(endpoint ? { dynamodbEndpoint: endpoint } : {}), policyDir, tables };
}
