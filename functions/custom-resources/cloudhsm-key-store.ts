import { CloudHSMV2Client, type Cluster, DescribeClustersCommand } from '@aws-sdk/client-cloudhsm-v2';
import {
  ConnectCustomKeyStoreCommand,
  CreateAliasCommand,
  CreateCustomKeyStoreCommand,
  CreateKeyCommand,
  type CustomKeyStoresListEntry,
  DescribeCustomKeyStoresCommand,
  DescribeKeyCommand,
  DisconnectCustomKeyStoreCommand,
  type KeyMetadata,
  KMSClient,
  UpdateCustomKeyStoreCommand,
} from '@aws-sdk/client-kms';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/*
 * Custom resource for the CDK Provider framework: a KMS key in a CloudHSM custom key store, which
 * CloudFormation has no resource type for.
 *
 *   onEvent    Create/Update: check the cluster (ACTIVE, >= 2 active HSMs in different AZs),
 *              create the key store or adopt the one with the same name, start connecting it.
 *              Delete: nothing (the key store and the key are retained, see below).
 *   isComplete polled by the framework (connecting takes minutes, longer than one Lambda run):
 *              CONNECTED -> create or adopt the key (by alias) and finish; CONNECTING -> wait;
 *              DISCONNECTED -> set the password, connect; FAILED -> fail with KMS's error code.
 *
 * Before it connects a store it did not just create, it sets the store's kmsuser password from the
 * secret (UpdateCustomKeyStore, which KMS allows only while DISCONNECTED): KMS keeps the password it
 * was given at creation, so without this an INVALID_CREDENTIALS failure could never be fixed by
 * correcting the secret and deploying again.
 *
 * Idempotent: every step looks for what an earlier (possibly interrupted) run made, by key store
 * name and by key alias, before creating anything. It never deletes or disconnects on Delete:
 * secrets wrapped under the key would become unreadable, and a CloudFormation delete (or a
 * replacement) must not be able to do that. Removing them is a deliberate manual step (docs).
 *
 * The kmsuser password is read from Secrets Manager at run time and sent to KMS only; it is never
 * a template property, never logged and never in an error message. The CloudHSM client is pinned to
 * 3.332.0 (the newest on the registry) and only this function uses it.
 */

/** ResourceProperties the construct sets (CloudFormation passes every value as a string). */
export interface KeyStoreProperties {
  readonly ClusterId: string;
  /** Name or ARN of the Secrets Manager secret holding the kmsuser password. */
  readonly KmsUserSecretId: string;
  /** PEM of the certificate that signed the cluster's certificate (customerCA.crt). */
  readonly TrustAnchorCertificate: string;
  readonly CustomKeyStoreName: string;
  /** `alias/...`: how a re-run finds the key an earlier run created. */
  readonly KeyAlias: string;
  readonly KeyDescription?: string;
}

interface RequestCommon {
  readonly RequestType: 'Create' | 'Update' | 'Delete';
  readonly LogicalResourceId?: string;
  readonly ResourceProperties: Record<string, unknown>;
  readonly OldResourceProperties?: Record<string, unknown>;
  readonly PhysicalResourceId?: string;
}

export type OnEventRequest = RequestCommon;
export type IsCompleteRequest = RequestCommon & { readonly Data?: Record<string, unknown> };

export interface OnEventResponse {
  readonly PhysicalResourceId: string;
  readonly Data?: Record<string, string>;
}

export interface IsCompleteResponse {
  readonly IsComplete: boolean;
  readonly Data?: Record<string, string>;
}

/** Properties that name what was created: changing them would orphan the key, so it is refused. */
const IMMUTABLE: readonly (keyof KeyStoreProperties)[] = ['ClusterId', 'CustomKeyStoreName', 'KeyAlias'];

/** What to do about each KMS connection error code (shown in the CloudFormation event). */
const CONNECTION_HINTS: Record<string, string> = {
  CLUSTER_NOT_FOUND: 'KMS cannot find the CloudHSM cluster.',
  INSUFFICIENT_CLOUDHSM_HSMS: 'the cluster has no active HSM; add HSMs (two, in different AZs).',
  INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET:
    'a cluster subnet has no free IP address; KMS needs one in each of the cluster subnets.',
  INVALID_CREDENTIALS:
    'the kmsuser password in the secret does not match the kmsuser crypto user in the cluster; fix the secret or the user, then deploy again.',
  USER_LOCKED_OUT:
    'the kmsuser crypto user is locked out; reset its password in the cluster and in the secret.',
  USER_NOT_FOUND: 'the cluster has no kmsuser crypto user; create it (docs/cloudhsm.md).',
  USER_LOGGED_IN: 'kmsuser is logged in to the cluster with a client; log it out, then deploy again.',
  SUBNET_NOT_FOUND: 'a subnet of the cluster was deleted; restore the cluster configuration.',
  NETWORK_ERRORS: 'KMS cannot reach the cluster; check the cluster security group and subnets.',
  INTERNAL_ERROR: 'KMS had an internal error; deploy again.',
};

function props(event: RequestCommon): KeyStoreProperties {
  const p = event.ResourceProperties;
  const str = (name: keyof KeyStoreProperties, optional = false): string | undefined => {
    const v = p[name];
    if (typeof v === 'string' && v.length > 0) return v;
    if (optional) return undefined;
    throw new Error(`property ${name} is required`);
  };
  const description = str('KeyDescription', true);
  return {
    ClusterId: str('ClusterId') as string,
    KmsUserSecretId: str('KmsUserSecretId') as string,
    TrustAnchorCertificate: str('TrustAnchorCertificate') as string,
    CustomKeyStoreName: str('CustomKeyStoreName') as string,
    KeyAlias: str('KeyAlias') as string,
    ...(description ? { KeyDescription: description } : {}),
  };
}

function log(message: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), message, ...fields })}\n`);
}

const nameOf = (err: unknown): string => (err as { name?: string } | undefined)?.name ?? 'Error';

/** Wraps an SDK failure in a message that says which step failed (SDK messages hold no secrets). */
async function step<T>(what: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`${what} failed: ${nameOf(err)}: ${message}`);
  }
}

/** The SDK clients; tests stub them with aws-sdk-client-mock. */
export interface Clients {
  readonly cloudhsm: CloudHSMV2Client;
  readonly kms: KMSClient;
  readonly secrets: SecretsManagerClient;
}

function defaultClients(): Clients {
  return {
    cloudhsm: new CloudHSMV2Client({}),
    kms: new KMSClient({}),
    secrets: new SecretsManagerClient({}),
  };
}

/** The cluster must be ACTIVE with at least two active HSMs in different Availability Zones. */
export async function checkCluster(clients: Clients, clusterId: string): Promise<Cluster> {
  const out = await step('DescribeClusters', () =>
    clients.cloudhsm.send(new DescribeClustersCommand({ Filters: { clusterIds: [clusterId] } })),
  );
  const cluster = (out.Clusters ?? []).find((c) => c.ClusterId === clusterId);
  if (!cluster) {
    throw new Error(`CloudHSM cluster ${clusterId} was not found in this account and region`);
  }
  if (cluster.State !== 'ACTIVE') {
    throw new Error(
      `CloudHSM cluster ${clusterId} is ${cluster.State ?? 'in an unknown state'}; it must be ACTIVE (initialized and activated) before KMS can use it`,
    );
  }
  const active = (cluster.Hsms ?? []).filter((h) => h.State === 'ACTIVE');
  const zones = new Set(active.map((h) => h.AvailabilityZone));
  if (active.length < 2 || zones.size < 2) {
    throw new Error(
      `CloudHSM cluster ${clusterId} has ${active.length} active HSM(s) in ${zones.size} Availability Zone(s); a KMS custom key store needs at least two active HSMs in different Availability Zones`,
    );
  }
  return cluster;
}

async function findKeyStore(
  clients: Clients,
  by: { CustomKeyStoreName: string } | { CustomKeyStoreId: string },
): Promise<CustomKeyStoresListEntry | undefined> {
  try {
    const out = await clients.kms.send(new DescribeCustomKeyStoresCommand(by));
    return out.CustomKeyStores?.[0];
  } catch (err) {
    if (nameOf(err) === 'CustomKeyStoreNotFoundException') return undefined;
    throw new Error(`DescribeCustomKeyStores failed: ${nameOf(err)}: ${(err as Error).message}`);
  }
}

/** The kmsuser password: the secret's string, or its `password` field when it is JSON. */
async function kmsUserPassword(clients: Clients, secretId: string): Promise<string> {
  const out = await step('GetSecretValue (kmsuser password)', () =>
    clients.secrets.send(new GetSecretValueCommand({ SecretId: secretId })),
  );
  let password = out.SecretString ?? '';
  if (password.trimStart().startsWith('{')) {
    try {
      const parsed = JSON.parse(password) as { password?: unknown };
      password = typeof parsed.password === 'string' ? parsed.password : '';
    } catch {
      throw new Error(
        `the secret ${secretId} is JSON but not valid; store the password or {"password": "..."}`,
      );
    }
  }
  // KMS's own rule for KeyStorePassword; said without echoing anything of the value.
  if (password.length < 7 || password.length > 32) {
    throw new Error(`the kmsuser password in ${secretId} must be 7 to 32 characters long`);
  }
  return password;
}

/** The key store, and whether this run created it (then KMS already holds the secret's password). */
interface EnsuredKeyStore {
  readonly store: CustomKeyStoresListEntry;
  readonly created: boolean;
}

async function ensureKeyStore(clients: Clients, p: KeyStoreProperties): Promise<EnsuredKeyStore> {
  const existing = await findKeyStore(clients, { CustomKeyStoreName: p.CustomKeyStoreName });
  if (existing) {
    if (existing.CloudHsmClusterId !== p.ClusterId) {
      throw new Error(
        `a custom key store named ${p.CustomKeyStoreName} already exists for cluster ${existing.CloudHsmClusterId ?? 'unknown'}, not ${p.ClusterId}; choose another name (context cloudHsmKeyStoreName)`,
      );
    }
    log('adopting existing custom key store', {
      customKeyStoreId: existing.CustomKeyStoreId,
      connectionState: existing.ConnectionState,
    });
    return { store: existing, created: false };
  }
  const password = await kmsUserPassword(clients, p.KmsUserSecretId);
  const created = await step('CreateCustomKeyStore', () =>
    clients.kms.send(
      new CreateCustomKeyStoreCommand({
        CustomKeyStoreName: p.CustomKeyStoreName,
        CustomKeyStoreType: 'AWS_CLOUDHSM',
        CloudHsmClusterId: p.ClusterId,
        TrustAnchorCertificate: p.TrustAnchorCertificate,
        KeyStorePassword: password,
      }),
    ),
  );
  log('created custom key store', { customKeyStoreId: created.CustomKeyStoreId });
  return {
    store: {
      CustomKeyStoreId: created.CustomKeyStoreId,
      CustomKeyStoreName: p.CustomKeyStoreName,
      CloudHsmClusterId: p.ClusterId,
      ConnectionState: 'DISCONNECTED',
    },
    created: true,
  };
}

/**
 * Gives a DISCONNECTED store the kmsuser password now in the secret. The password goes to KMS only;
 * the log line and any error name the store and the secret, never the value.
 */
async function syncPassword(clients: Clients, id: string, p: KeyStoreProperties): Promise<void> {
  const password = await kmsUserPassword(clients, p.KmsUserSecretId);
  await step('UpdateCustomKeyStore (kmsuser password)', () =>
    clients.kms.send(new UpdateCustomKeyStoreCommand({ CustomKeyStoreId: id, KeyStorePassword: password })),
  );
  log('set the kmsuser password of the custom key store from the secret', {
    customKeyStoreId: id,
    secret: p.KmsUserSecretId,
  });
}

async function connect(clients: Clients, id: string): Promise<void> {
  try {
    await clients.kms.send(new ConnectCustomKeyStoreCommand({ CustomKeyStoreId: id }));
    log('connecting custom key store', { customKeyStoreId: id });
  } catch (err) {
    // Already connecting (a concurrent or earlier call): the next poll sees where it got to.
    if (nameOf(err) === 'CustomKeyStoreInvalidStateException') return;
    throw new Error(`ConnectCustomKeyStore failed: ${nameOf(err)}: ${(err as Error).message}`);
  }
}

function connectionFailure(store: CustomKeyStoresListEntry): Error {
  const code = store.ConnectionErrorCode ?? 'UNKNOWN';
  const hint = CONNECTION_HINTS[code] ?? 'see "How to fix a connection failure" in the KMS developer guide.';
  return new Error(
    `custom key store ${store.CustomKeyStoreId} failed to connect (ConnectionErrorCode ${code}): ${hint}`,
  );
}

function keyOutputs(storeId: string, key: KeyMetadata): Record<string, string> {
  return { CustomKeyStoreId: storeId, KeyArn: key.Arn as string, KeyId: key.KeyId as string };
}

/** Finds the key by alias (an earlier run made it) or creates it in the key store and names it. */
async function ensureKey(clients: Clients, storeId: string, p: KeyStoreProperties): Promise<KeyMetadata> {
  const existing = await describeAlias(clients, p.KeyAlias);
  if (existing) return checkKey(existing, storeId, p.KeyAlias);
  const created = await step('CreateKey (origin AWS_CLOUDHSM)', () =>
    clients.kms.send(
      new CreateKeyCommand({
        CustomKeyStoreId: storeId,
        Origin: 'AWS_CLOUDHSM',
        KeySpec: 'SYMMETRIC_DEFAULT',
        KeyUsage: 'ENCRYPT_DECRYPT',
        Description: p.KeyDescription ?? 'Coffer data key wrapping key (CloudHSM key store)',
        Tags: [
          { TagKey: 'coffer:purpose', TagValue: 'secrets' },
          { TagKey: 'coffer:alias', TagValue: p.KeyAlias },
        ],
      }),
    ),
  );
  const key = created.KeyMetadata as KeyMetadata;
  try {
    await clients.kms.send(new CreateAliasCommand({ AliasName: p.KeyAlias, TargetKeyId: key.KeyId }));
  } catch (err) {
    // Another run named its key first: use that one (this key stays, tagged, for manual cleanup).
    if (nameOf(err) !== 'AlreadyExistsException') {
      throw new Error(
        `CreateAlias ${p.KeyAlias} for key ${key.Arn} failed: ${nameOf(err)}: ${(err as Error).message}`,
      );
    }
    const winner = await describeAlias(clients, p.KeyAlias);
    if (!winner) throw new Error(`alias ${p.KeyAlias} exists but cannot be described`);
    return checkKey(winner, storeId, p.KeyAlias);
  }
  log('created key in custom key store', { customKeyStoreId: storeId, keyArn: key.Arn });
  return key;
}

async function describeAlias(clients: Clients, alias: string): Promise<KeyMetadata | undefined> {
  try {
    return (await clients.kms.send(new DescribeKeyCommand({ KeyId: alias }))).KeyMetadata;
  } catch (err) {
    if (nameOf(err) === 'NotFoundException') return undefined;
    throw new Error(`DescribeKey ${alias} failed: ${nameOf(err)}: ${(err as Error).message}`);
  }
}

function checkKey(key: KeyMetadata, storeId: string, alias: string): KeyMetadata {
  if (key.CustomKeyStoreId !== storeId || key.Origin !== 'AWS_CLOUDHSM') {
    throw new Error(`alias ${alias} names key ${key.Arn}, which is not in custom key store ${storeId}`);
  }
  if (key.KeyState !== 'Enabled') {
    throw new Error(`key ${key.Arn} (${alias}) is ${key.KeyState}; enable it (or cancel its deletion) first`);
  }
  return key;
}

/** The Provider framework's onEvent handler. */
export async function onEventWith(clients: Clients, event: OnEventRequest): Promise<OnEventResponse> {
  if (event.RequestType === 'Delete') {
    // Retained on purpose: see the header comment and docs/cloudhsm.md.
    log('delete requested: the custom key store and its key are retained', {
      physicalResourceId: event.PhysicalResourceId,
    });
    return { PhysicalResourceId: event.PhysicalResourceId ?? 'none' };
  }
  const p = props(event);
  if (event.RequestType === 'Update') {
    const old = event.OldResourceProperties ?? {};
    const changed = IMMUTABLE.filter((k) => old[k] !== undefined && old[k] !== p[k]);
    if (changed.length > 0) {
      throw new Error(
        `${changed.join(', ')} cannot change on an existing deployment: the key that wraps the stored secrets would be orphaned. Keep the old value(s); see docs/cloudhsm.md for moving to another key store`,
      );
    }
  }
  await checkCluster(clients, p.ClusterId);
  const { store, created } = await ensureKeyStore(clients, p);
  const id = store.CustomKeyStoreId as string;
  switch (store.ConnectionState) {
    case 'DISCONNECTED':
      if (!created) await syncPassword(clients, id, p);
      await connect(clients, id);
      break;
    case 'FAILED':
      // KMS wants a failed store disconnected before it connects again; isComplete reconnects.
      log('custom key store is FAILED; disconnecting to retry', {
        customKeyStoreId: id,
        connectionErrorCode: store.ConnectionErrorCode,
      });
      await step('DisconnectCustomKeyStore', () =>
        clients.kms.send(new DisconnectCustomKeyStoreCommand({ CustomKeyStoreId: id })),
      );
      break;
    default:
      break;
  }
  return { PhysicalResourceId: id, Data: { CustomKeyStoreId: id } };
}

/** The Provider framework's isComplete handler, polled until it answers true or the total timeout. */
export async function isCompleteWith(
  clients: Clients,
  event: IsCompleteRequest,
): Promise<IsCompleteResponse> {
  if (event.RequestType === 'Delete') return { IsComplete: true };
  const p = props(event);
  const id = event.PhysicalResourceId;
  if (!id) throw new Error('no custom key store id to wait for');
  const store = await findKeyStore(clients, { CustomKeyStoreId: id });
  if (!store) throw new Error(`custom key store ${id} no longer exists`);
  switch (store.ConnectionState) {
    case 'CONNECTED': {
      const key = await ensureKey(clients, id, p);
      return { IsComplete: true, Data: keyOutputs(id, key) };
    }
    case 'DISCONNECTED':
      await syncPassword(clients, id, p);
      await connect(clients, id);
      return { IsComplete: false };
    case 'FAILED':
      throw connectionFailure(store);
    default:
      log('waiting for custom key store', { customKeyStoreId: id, connectionState: store.ConnectionState });
      return { IsComplete: false };
  }
}

/** Made on first use and kept for the life of the execution environment. */
const clients = defaultClients();

export const onEvent = (event: OnEventRequest): Promise<OnEventResponse> => onEventWith(clients, event);

export const isComplete = (event: IsCompleteRequest): Promise<IsCompleteResponse> =>
  isCompleteWith(clients, event);
