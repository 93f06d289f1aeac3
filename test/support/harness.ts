import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { PrincipalDirectory } from '../../lib/access/directory.js';
import type { RotationScheduler } from '../../lib/access/offboard.js';
import { type AuditTrail, NoAuditTrail } from '../../lib/audit/trail.js';
import { DevAuthenticator } from '../../lib/authn/dev-authenticator.js';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import type { Authenticator } from '../../lib/authn/principal.js';
import { AllowAllAuthorizer, type Authorizer } from '../../lib/authz/authorizer.js';
import { type ControlSettings, composeCoffer } from '../../lib/compose.js';
import type { AppDeps, CofferApp } from '../../lib/http/app.js';
import type { KeyProvider } from '../../lib/keys/provider.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { jsonLogger, type Logger } from '../../lib/log.js';
import type { RotatorSettings } from '../../lib/secrets/rotators/invoker.js';
import type { SecretService } from '../../lib/secrets/service.js';
import type { SecretsStore, StoreOptions } from '../../lib/store/secrets-store.js';
import type { TableNames } from '../../lib/store/tables.js';
import { freshTables } from './dynamo.js';

export interface Harness {
  readonly app: CofferApp;
  readonly service: SecretService;
  readonly store: SecretsStore;
  readonly client: DynamoDBClient;
  readonly tables: TableNames;
  readonly dataDir: string;
  readonly issuer: DevIssuer;
  readonly keys: KeyProvider;
  /** The principal directory the app writes to. */
  readonly directory: PrincipalDirectory;
  /** Every line the app logged. */
  readonly logs: string[];
  /** An admin token of the dev issuer. */
  readonly token: string;
  /** Sends a request to the app with the admin token (or `token`). */
  call(
    method: string,
    route: string,
    options?: { body?: unknown; token?: string | null; headers?: Record<string, string> },
  ): Promise<{ status: number; body: any; text: string; headers: Headers }>;
}

export interface HarnessOptions {
  readonly label?: string;
  readonly authorizer?: Authorizer;
  readonly authenticator?: (issuer: DevIssuer) => Authenticator;
  /**
   * The audit trail: a trail built by the test, or `'dynamo'` for the composition's own signed
   * trail in the harness's audit table, as the servers wire it (one chain, local root key; not
   * with `keys`). Default: `NoAuditTrail`.
   */
  readonly audit?: AuditTrail | 'dynamo';
  readonly keys?: (dataDir: string) => Promise<KeyProvider>;
  readonly store?: StoreOptions;
  readonly now?: () => Date;
  readonly clientWrapper?: (client: DynamoDBClient) => DynamoDBClient;
  /** Replaces the connection facts (e.g. an IAM caller from a Lambda event in c.env). */
  readonly connection?: AppDeps['connection'];
  /**
   * Freshness bounds of the policy set and revocation list. Default: an hour each, so that the
   * control records are read on the first request only and per-request call counts stay exact;
   * the revocation and policy tests set their own.
   */
  readonly control?: ControlSettings;
  /** The rotation port offboarding marks read secrets with. Default: none (rotation not configured). */
  readonly rotation?: RotationScheduler;
  /** The external rotators the installation calls. Default: none. */
  readonly rotators?: RotatorSettings;
}

const QUIET_CONTROL: ControlSettings = { policyFreshnessMs: 3_600_000, revocationFreshnessMs: 3_600_000 };

/**
 * The real app over DynamoDB Local and the local key provider, in a temp data dir, built by the
 * composition root like the servers; the options replace its adapters with test ones.
 */
export async function createHarness(options: HarnessOptions = {}): Promise<Harness> {
  const { client, tables } = await freshTables(options.label ?? 'h');
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-test-'));
  const issuer = await DevIssuer.open(dataDir);
  const logs: string[] = [];
  const logger: Logger = jsonLogger((l) => logs.push(l));
  const { app, service, store, keys, directory } = await composeCoffer({
    dynamo: options.clientWrapper ? options.clientWrapper(client) : client,
    tables,
    ...(options.store ? { store: options.store } : {}),
    keys: options.keys
      ? {
          kind: 'ports',
          provider: await options.keys(dataDir),
          storageMac: await openLocalStorageMacKey(dataDir),
        }
      : { kind: 'local', dataDir },
    audit:
      options.audit === 'dynamo'
        ? { kind: 'dynamo', writer: 'test', chains: 1 }
        : { kind: 'trail', trail: options.audit ?? new NoAuditTrail() },
    policy: { authorizer: options.authorizer ?? new AllowAllAuthorizer() },
    control: options.control ?? QUIET_CONTROL,
    authn: {
      authenticator: options.authenticator
        ? options.authenticator(issuer)
        : new DevAuthenticator(issuer.publicKey),
    },
    connection: options.connection ?? (() => ({ sourceIp: '127.0.0.1' })),
    logger,
    ...(options.now ? { now: options.now } : {}),
    ...(options.rotation ? { rotation: options.rotation } : {}),
    ...(options.rotators ? { rotators: options.rotators } : {}),
  });
  const token = await issuer.mint({ subject: 'dev-admin', groups: ['admins'] });
  return {
    app,
    service,
    store,
    client,
    tables,
    dataDir,
    issuer,
    keys,
    directory,
    logs,
    token,
    async call(method, route, opts = {}) {
      const headers: Record<string, string> = { ...(opts.headers ?? {}) };
      const bearer = opts.token === undefined ? token : opts.token;
      if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
      let body: string | undefined;
      if (opts.body !== undefined) {
        body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await app.request(route, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      return { status: res.status, body: parsed, text, headers: res.headers };
    },
  };
}
