import { type KeyObject, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { Context } from 'hono';
import { PrincipalDirectory } from './access/directory.js';
import { Offboarding, type RotationScheduler } from './access/offboard.js';
import { AccessReports } from './access/reports.js';
import { rotationScheduler } from './access/rotation-port.js';
import { DynamoAuditTrail } from './audit/dynamo-trail.js';
import { openAuditHmacKey } from './audit/hmac-key.js';
import { AuditReader } from './audit/reader.js';
import { type FieldHasher, hmacFieldHasher } from './audit/record.js';
import type { AuditTrail } from './audit/trail.js';
import { buildAuthenticator } from './authn/build.js';
import type { Authenticator } from './authn/principal.js';
import type { Authorizer } from './authz/authorizer.js';
import { CedarAuthorizer } from './authz/cedar.js';
import type { CofferConfig } from './config-file.js';
import { ControlAdmin } from './control/admin.js';
import { ControlPlane } from './control/plane.js';
import { loadSealedPolicyDir } from './control/policy-seal.js';
import { signedGenerations } from './control/signed-generations.js';
import { Envelope } from './crypto/envelope.js';
import { ConfigError, ThrottledError } from './errors.js';
import { type CofferApp, type ConnectionInfo, createApp } from './http/app.js';
import { BranchKeyProvider } from './keys/branch-keys.js';
import { KeyAdmin } from './keys/key-admin.js';
import type { KeyCacheSettings } from './keys/key-cache.js';
import { deriveKmsMacKey, KmsRootSigner } from './keys/kms.js';
import { LocalRootSigner } from './keys/local.js';
import type { KeyProvider, RootSigner } from './keys/provider.js';
import { KmsRootKeys, LocalRootKeys, ProviderRootKeys, type RootKeys } from './keys/root-keys.js';
import {
  HmacStorageMacKey,
  openLocalStorageMacKey,
  STORAGE_MAC_KEY_V1,
  STORAGE_MAC_LABEL_V1,
  type StorageMacKey,
} from './keys/storage-mac.js';
import { jsonLogger, type Logger } from './log.js';
import { Purger } from './secrets/purger.js';
import { GrantAuthenticator, GrantReader, grantScopedAuthorizer } from './secrets/rotators/grant-access.js';
import { RotationGrants } from './secrets/rotators/grants.js';
import type { RotatorSettings } from './secrets/rotators/invoker.js';
import { SecretService } from './secrets/service.js';
import { ControlRecords } from './store/control-records.js';
import { CursorSealer, deriveCursorKey } from './store/cursor.js';
import { migrateDataDirHeads } from './store/legacy-heads.js';
import { SecretsStore, type StoreOptions } from './store/secrets-store.js';
import { StorageUnavailableError } from './store/storage-errors.js';
import type { TableNames } from './store/tables.js';

/*
 * The composition root: the one place that turns settings into a running Coffer — store, key
 * provider, authorizer, audit trail, authenticator, service and app. The local server, the Lambda
 * functions and the test harness all call it; they differ only in the adapters their settings
 * name (where the keys are, who is calling, where audit lines go). It reads no environment and
 * keeps no state between calls: callers parse their own configuration and pass it in.
 */

/** Keys in the local data dir: the root key ring, the Ed25519 audit root key and the audit HMAC key. */
export interface LocalKeys {
  readonly kind: 'local';
  /** The data dir; keys live in `<dataDir>/keys/` (0600), made on first use. */
  readonly dataDir: string;
}

/** Keys in AWS KMS (standard, or in a CloudHSM custom key store). */
export interface KmsKeys {
  readonly kind: 'kms';
  /**
   * A client whose own retries are off (`maxAttempts: 1`): the adapters retry with their own
   * jittered backoff, and two layers of retries would multiply.
   */
  readonly client: KMSClient;
  /** ARN of the symmetric key new data keys are wrapped under. */
  readonly keyId: string;
  /** ARNs of keys that wrapped older versions and may still unwrap them. Default: none. */
  readonly previousKeyIds?: readonly string[];
  /**
   * ARNs `coffer keys rotate --root --kms-key` may move the root to (CDK context `rootKeyArns`).
   * Default: none.
   */
  readonly rootKeyArns?: readonly string[];
  /** The stack's account: every root key must be in it. Default: not checked. */
  readonly account?: string;
  /** ARN of the ECC_NIST_P256 root audit key. */
  readonly auditKeyId: string;
  /**
   * The HMAC_256 key the audit field-hashing key is derived from, and the label it is derived for.
   * Default: none — sensitive request fields are then left out of audit records, never stored raw.
   */
  readonly fieldHmac?: { readonly keyId: string; readonly label: string };
  /**
   * The HMAC_256 key the storage-integrity MAC key (heads, control records) is derived from, with
   * kms:GenerateMac over STORAGE_MAC_LABEL_V1. Default: the field HMAC key — the label differs, so
   * the derived keys are unrelated. One of the two is required: heads cannot be trusted without it.
   */
  readonly storageMacKeyId?: string;
}

/**
 * Adapters built by the caller (tests: a provider that counts or fails calls). A DynamoDB audit
 * trail needs `auditRoot`; `fieldHasher` is optional as with KMS.
 */
export interface KeyPorts {
  readonly kind: 'ports';
  readonly provider: KeyProvider;
  readonly auditRoot?: RootSigner;
  readonly fieldHasher?: FieldHasher;
  /** The storage-integrity MAC key (tests: `openLocalStorageMacKey(dataDir)`). */
  readonly storageMac: StorageMacKey;
  /**
   * Put the key hierarchy (branch keys, cache) in front of `provider`, as local and KMS keys
   * always are. Default: false — the provider wraps every data key itself (tests that count or
   * fail its calls per request).
   */
  readonly hierarchy?: boolean;
}

/** Where the keys are: the one setting, with `authn`, that the local server and AWS differ in. */
export type KeySettings = LocalKeys | KmsKeys | KeyPorts;

/** Signed, hash-chained audit records in the audit table (AWS and the local server). */
export interface DynamoAudit {
  readonly kind: 'dynamo';
  /** What kind of process writes (`lambda`, `local-server`), recorded in each chain certificate. */
  readonly writer: string;
  /** Chains written in parallel by this process. Default 1. */
  readonly chains?: number;
  /**
   * Receives each durable record as one JSON line (stdout in Lambda, for the CloudWatch copy).
   * Default: none.
   */
  readonly sink?: (line: string) => void;
}

/** An audit trail built by the caller (tests: `NoAuditTrail`, or a trail over test fixtures). */
export interface GivenAudit {
  readonly kind: 'trail';
  readonly trail: AuditTrail;
}

export type AuditSettings = DynamoAudit | GivenAudit;

/**
 * The Cedar policies: a directory (schema and `.cedar` files, loaded and validated first, so that
 * an invalid set stops the start before anything else happens), or an authorizer built already
 * (tests; the local server, which loads its policies before it takes its data-dir lock).
 */
export type PolicySettings =
  | {
      readonly dir: string;
      /**
       * Skip validating a set that a verified seal says was validated already, and seal one
       * that validates (lib/control/policy-seal.ts): the storage key is then opened before the
       * policies are loaded. For a directory that does not change while deployed (the Lambda
       * bundle's). Default false: validated at every start.
       */
      readonly sealed?: boolean;
      readonly authorizer?: never;
    }
  | { readonly authorizer: Authorizer; readonly dir?: never; readonly sealed?: never };

/**
 * Who may call: the configured OIDC issuers, plus the dev issuer when its key is given (only the
 * local server gives it, so AWS never trusts the dev issuer); or an authenticator built already
 * (tests).
 */
export type AuthnSettings =
  | {
      readonly config: CofferConfig;
      /** The local dev issuer's public key. Default: the dev issuer is not trusted. */
      readonly devIssuerKey?: KeyObject;
      /** Replaces global fetch for OIDC discovery and JWKS (tests). Default: global fetch. */
      readonly fetch?: typeof fetch;
      readonly authenticator?: never;
    }
  | {
      readonly authenticator: Authenticator;
      readonly config?: never;
      readonly devIssuerKey?: never;
      readonly fetch?: never;
    };

/**
 * Policies that change without a deploy and revocations (docs/operations.md). Every default is
 * the bound; tests shorten them.
 */
export interface ControlSettings {
  /** How stale the policy set may be on an instance. Default 30 s. */
  readonly policyFreshnessMs?: number;
  /** How stale the revocation list may be on an instance. Default 10 s. */
  readonly revocationFreshnessMs?: number;
  /** A policy push or rollback needs a second admin's approval. Default false. */
  readonly requireApproval?: boolean;
}

/** Everything a Coffer is built from. */
export interface CofferSettings {
  /** The DynamoDB client (real DynamoDB, or DynamoDB Local); the store and the audit trail share it. */
  readonly dynamo: DynamoDBClient;
  readonly tables: TableNames;
  /** Store tuning (transaction retries). Default: the store's defaults. */
  readonly store?: StoreOptions;
  readonly keys: KeySettings;
  readonly audit: AuditSettings;
  readonly policy: PolicySettings;
  /** Freshness bounds and approvals of pushed policy sets and revocations. Default: the bounds of issue 17. */
  readonly control?: ControlSettings;
  readonly authn: AuthnSettings;
  /** Reads the connection facts (source IP, raw path, IAM caller) the adapter put in the request's env. */
  readonly connection: (c: Context) => ConnectionInfo;
  /** Operational log. Default: JSON lines on stderr. */
  readonly logger?: Logger;
  /** The clock of the service and the purger. Default: the system clock. */
  readonly now?: () => Date;
  /**
   * The stable installation id that values (AAD, KMS encryption context) and heads (MAC) are bound
   * to. Set once and kept: a restored table under another name still reads. Default: the secrets
   * table's name, which is what every installation from before this setting was bound to.
   */
  readonly installationId?: string;
  /** The branch key cache (docs/keys.md). Default: DEFAULT_KEY_CACHE (5 minutes, 100,000 uses). */
  readonly keyCache?: KeyCacheSettings;
  /** Re-wrap pace: items re-wrapped per second at most. Default 50. */
  readonly rewrapItemsPerSecond?: number;
  /**
   * Secret rotation, for offboarding to mark read secrets due (and rotate them with `rotate`).
   * Default: the composed secret service's own (lib/access/rotation-port.ts).
   */
  readonly rotation?: RotationScheduler;
  /**
   * The external rotators this installation calls: loopback webhooks (local server), allow-listed
   * Lambda functions (AWS). Default: none, so a policy naming a rotator is refused.
   */
  readonly rotators?: RotatorSettings;
}

/** A composed Coffer: the app and the parts its host needs besides it. */
export interface Coffer {
  readonly app: CofferApp;
  readonly service: SecretService;
  readonly store: SecretsStore;
  /** Authenticated control records (one instance per process: it remembers generations seen). */
  readonly control: ControlRecords;
  /**
   * The policy set and revocation list in force, kept fresh from the control records; also the
   * `authorizer` below. The local server hands it a reloaded policy directory (`replaceBase`).
   */
  readonly plane: ControlPlane;
  /** The purger the service uses; the host runs `purgeExpired` on its schedule. */
  readonly purger: Purger;
  /**
   * The authorizer the policy setting named: the bundled (or local) set, the base of `plane`.
   * Requests are decided by `plane`, which puts a pushed set in its place when there is one.
   */
  readonly authorizer: Authorizer;
  readonly authenticator: Authenticator;
  readonly keys: KeyProvider;
  readonly audit: AuditTrail;
  /** Key administration (`coffer keys …`); absent for ports without the hierarchy. */
  readonly keyAdmin?: KeyAdmin;
  /** What the server last saw of each principal (docs/access.md); `flush()` at shutdown. */
  readonly directory: PrincipalDirectory;
}

/** A Coffer that writes its own audit records: the host checkpoints them with the same root key. */
export interface AuditedCoffer extends Coffer {
  readonly audit: DynamoAuditTrail;
  readonly auditRoot: RootSigner;
}

/**
 * Loads the authorizer the policy setting names. A directory is parsed and validated against the
 * schema here; an invalid one rejects with `PolicySetError` (naming file and line).
 */
export async function loadAuthorizer(policy: PolicySettings, logger: Logger): Promise<Authorizer> {
  return policy.authorizer ?? CedarAuthorizer.fromDir(policy.dir, { logger });
}

const clockMs = (now: () => Date) => () => now().getTime();

/** The root of the key hierarchy the keys setting names; undefined for ports without it. */
async function openRootKeys(keys: KeySettings, logger: Logger): Promise<RootKeys | undefined> {
  switch (keys.kind) {
    case 'local':
      return LocalRootKeys.open(keys.dataDir);
    case 'kms':
      return new KmsRootKeys({
        client: keys.client,
        keyId: keys.keyId,
        previousKeyIds: keys.previousKeyIds ?? [],
        allowedKeyIds: keys.rootKeyArns ?? [],
        ...(keys.account !== undefined ? { account: keys.account } : {}),
        logger,
      });
    case 'ports':
      return keys.hierarchy ? new ProviderRootKeys(keys.provider) : undefined;
  }
}

/**
 * The root audit key the keys setting names: it certifies each writer chain's key and signs
 * checkpoints (the checkpoint job uses it alone). Rejects with `ConfigError` for ports without one.
 */
export async function openAuditRoot(keys: KeySettings, logger: Logger): Promise<RootSigner> {
  switch (keys.kind) {
    case 'local':
      return LocalRootSigner.open(keys.dataDir);
    case 'kms':
      return new KmsRootSigner({ client: keys.client, keyId: keys.auditKeyId, logger });
    case 'ports':
      if (!keys.auditRoot) throw new ConfigError('a DynamoDB audit trail needs an audit root signer');
      return keys.auditRoot;
  }
}

/**
 * A local data dir's installation id: `<dataDir>/installation-id`, written at the first start with
 * the secrets table's name then (so every data dir from before reads as it did). Kept in the data
 * dir, not the table, so pointing the server at a restored table (COFFER_SECRETS_TABLE) keeps it.
 */
export async function localInstallationId(dataDir: string, table: string): Promise<string> {
  const file = join(dataDir, 'installation-id');
  try {
    const id = (await readFile(file, 'utf8')).trim();
    if (id === '') throw new ConfigError(`${file} is empty`);
    return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  try {
    await writeFile(file, `${table}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return (await readFile(file, 'utf8')).trim();
}

/**
 * The storage-integrity MAC key the keys setting names. Derived once per composition, like the
 * audit field key (the same freshness: a process lives with the key it derived at start).
 */
export async function openStorageMacKey(keys: KeySettings, logger: Logger): Promise<StorageMacKey> {
  switch (keys.kind) {
    case 'local':
      return openLocalStorageMacKey(keys.dataDir);
    case 'kms': {
      const keyId = keys.storageMacKeyId ?? keys.fieldHmac?.keyId;
      if (!keyId) throw new ConfigError('storage integrity needs an HMAC_256 KMS key (storageMacKeyId)');
      const key = await deriveKmsMacKey({ client: keys.client, keyId, label: STORAGE_MAC_LABEL_V1, logger });
      try {
        return new HmacStorageMacKey([{ id: STORAGE_MAC_KEY_V1, key }]);
      } finally {
        key.fill(0);
      }
    }
    case 'ports':
      return keys.storageMac;
  }
}

/**
 * The MAC key material the keys setting names: the local audit HMAC key, or the key derived in
 * KMS for the audit field hashes. Undefined for ports, and for KMS without a field HMAC key.
 */
async function openMacMaterial(keys: KeySettings, logger: Logger): Promise<Uint8Array | undefined> {
  switch (keys.kind) {
    case 'local':
      return openAuditHmacKey(keys.dataDir);
    case 'kms':
      return keys.fieldHmac ? deriveKmsMacKey({ client: keys.client, ...keys.fieldHmac, logger }) : undefined;
    case 'ports':
      return undefined;
  }
}

/** The MAC keys a Coffer uses: the audit field hasher and the list-cursor sealer. */
interface MacKeys {
  readonly fieldHasher: FieldHasher | undefined;
  readonly cursors: CursorSealer;
}

/**
 * Both MAC keys from the one key material (one KMS call at most): the field hasher keys with the
 * material itself, as before; the cursor key is an HKDF derivation under its own label, so the two
 * never share a key. Without material (ports, KMS without a field HMAC key) cursors are sealed
 * with a random key of this process: valid only on the instance that made them.
 */
async function openMacKeys(keys: KeySettings, logger: Logger): Promise<MacKeys> {
  const material = await openMacMaterial(keys, logger);
  if (!material) {
    return {
      fieldHasher: keys.kind === 'ports' ? keys.fieldHasher : undefined,
      cursors: new CursorSealer(randomBytes(32)),
    };
  }
  // The hasher and the sealer keep their own copies; this one must not linger in memory.
  const out = {
    fieldHasher: hmacFieldHasher(material),
    cursors: new CursorSealer(deriveCursorKey(material)),
  };
  material.fill(0);
  return out;
}

/** The audit trail in the audit table, its chains certified by the root key the keys setting names. */
async function composeDynamoAudit(
  settings: CofferSettings,
  audit: DynamoAudit,
  fieldHasher: FieldHasher | undefined,
  logger: Logger,
): Promise<{ readonly trail: DynamoAuditTrail; readonly root: RootSigner }> {
  const root = await openAuditRoot(settings.keys, logger);
  const trail = new DynamoAuditTrail({
    client: settings.dynamo,
    table: settings.tables.audit,
    root,
    ...(fieldHasher ? { fieldHasher } : {}),
    ...(audit.sink ? { sink: audit.sink } : {}),
    chains: audit.chains ?? 1,
    writer: audit.writer,
  });
  return { trail, root };
}

/**
 * The purger alone, for the scheduled purge: it needs the store and nothing else — no key, no
 * authorizer, no audit trail.
 */
export function composePurger(settings: Pick<CofferSettings, 'dynamo' | 'tables' | 'store' | 'now'>): Purger {
  return new Purger({
    store: new SecretsStore(settings.dynamo, settings.tables.secrets, settings.store),
    ...(settings.now ? { now: settings.now } : {}),
  });
}

/** What a job needs of the secrets table: its authenticated store and control records. */
export interface ComposedStorage {
  readonly store: SecretsStore;
  readonly control: ControlRecords;
  /** The storage MAC key, for other authenticated records of the table (the principal directory). */
  readonly key: StorageMacKey;
}

/** The settings the storage parts are made from (the API's own, or a job's). */
export type StorageSettings = Pick<CofferSettings, 'dynamo' | 'tables' | 'keys' | 'store' | 'installationId'>;

/**
 * The secrets table's store and control records, both authenticated with the storage MAC key
 * (one KMS call at most) and bound to the installation id: the API and every job read heads and
 * control records through these, so a job cannot disagree with the API on what verifies.
 */
export async function composeStorage(
  settings: StorageSettings,
  logger: Logger,
  /** The storage MAC key when the caller opened it already (alongside other key derivations). */
  opened?: StorageMacKey,
): Promise<ComposedStorage> {
  const key = opened ?? (await openStorageMacKey(settings.keys, logger));
  const binding =
    settings.installationId ??
    (settings.keys.kind === 'local'
      ? await localInstallationId(settings.keys.dataDir, settings.tables.secrets)
      : settings.tables.secrets);
  const store = new SecretsStore(settings.dynamo, settings.tables.secrets, settings.store, { key, binding });
  const control = new ControlRecords({
    client: settings.dynamo,
    table: settings.tables.secrets,
    key,
    binding,
  });
  return { store, control, key };
}

/**
 * Key administration alone, for the scheduled re-wrap: the root the keys setting names, the
 * branch keys over the control records, and no authorizer (it serves no caller, so every admin
 * route of it is refused; `rewrapTick` needs none).
 */
export async function composeKeyAdmin(
  settings: StorageSettings & Pick<CofferSettings, 'keyCache' | 'now'>,
  logger: Logger,
): Promise<KeyAdmin> {
  const root = await openRootKeys(settings.keys, logger);
  if (!root) throw new ConfigError('key administration needs a root key (local, KMS, or a hierarchy port)');
  const { store, control } = await composeStorage(settings, logger);
  const keys = new BranchKeyProvider({
    root,
    control,
    binding: store.binding,
    ...(settings.keyCache ? { cache: settings.keyCache } : {}),
    ...(settings.now ? { now: clockMs(settings.now) } : {}),
  });
  return new KeyAdmin({
    keys,
    control,
    client: settings.dynamo,
    table: settings.tables.secrets,
    binding: store.binding,
  });
}

/** Every Coffer group the authentication config can give: issuers' group and workload mappings. */
function configuredGroups(config: CofferConfig): string[] {
  const groups = new Set<string>();
  for (const issuer of config.issuers) {
    for (const mapped of Object.values(issuer.groupMapping)) for (const g of mapped) groups.add(g);
    for (const w of issuer.workloads ?? []) for (const g of w.groups) groups.add(g);
  }
  return [...groups].sort();
}

/**
 * Builds a Coffer from its settings, in an order that fails early and cheaply: the policies first
 * (nothing else is touched when they are invalid), then the keys (a KMS call at most: the field
 * key derivation), the audit trail, the service, the authenticator and the app. Nothing is started
 * that would need stopping: the host owns DynamoDB Local, timers and the listener.
 *
 * @example
 * const coffer = await composeCoffer({
 *   dynamo: client,
 *   tables: DEFAULT_TABLES,
 *   keys: { kind: 'local', dataDir },
 *   audit: { kind: 'dynamo', writer: 'local-server', chains: 4 },
 *   policy: { dir: policyDir },
 *   authn: { config, devIssuerKey: issuer.publicKey },
 *   connection: (c) => connectionFromIncoming(c.env),
 *   logger,
 * });
 * serve({ fetch: coffer.app.fetch, hostname: '127.0.0.1', port });
 */
export function composeCoffer(
  settings: CofferSettings & { readonly audit: DynamoAudit },
): Promise<AuditedCoffer>;
export function composeCoffer(settings: CofferSettings): Promise<Coffer>;
export async function composeCoffer(settings: CofferSettings): Promise<Coffer | AuditedCoffer> {
  const logger = settings.logger ?? jsonLogger();
  if (settings.audit.kind === 'dynamo' && settings.keys.kind === 'ports' && !settings.keys.auditRoot) {
    throw new ConfigError('a DynamoDB audit trail needs an audit root signer');
  }
  const policy = settings.policy;
  let baseAuthorizer: Authorizer | undefined;
  let storageMac: StorageMacKey;
  let macs: MacKeys;
  if (policy.dir !== undefined && policy.sealed === true) {
    // The seal is a control record: the storage key comes first. Both KMS derivations of the
    // start run side by side.
    [storageMac, macs] = await Promise.all([
      openStorageMacKey(settings.keys, logger),
      openMacKeys(settings.keys, logger),
    ]);
  } else {
    baseAuthorizer = await loadAuthorizer(policy, logger);
    macs = await openMacKeys(settings.keys, logger);
    storageMac = await openStorageMacKey(settings.keys, logger);
  }
  const root = await openRootKeys(settings.keys, logger);

  let audit: AuditTrail;
  let written: { readonly trail: DynamoAuditTrail; readonly root: RootSigner } | undefined;
  if (settings.audit.kind === 'dynamo') {
    written = await composeDynamoAudit(settings, settings.audit, macs.fieldHasher, logger);
    audit = written.trail;
  } else {
    audit = settings.audit.trail;
  }

  const { store, control } = await composeStorage(settings, logger, storageMac);
  if (baseAuthorizer === undefined) {
    const { set } = await loadSealedPolicyDir(policy.dir as string, control, logger);
    baseAuthorizer = new CedarAuthorizer(set, { logger });
  }
  if (settings.keys.kind === 'local') {
    // A data dir from before authenticated heads reads without a manual step: its heads are
    // MAC'd once, here, before anything is served (see lib/store/legacy-heads.ts).
    try {
      const migration = await migrateDataDirHeads(store, settings.keys.dataDir);
      if (migration.migrated > 0) logger.info('legacy heads authenticated', { migrated: migration.migrated });
    } catch (err) {
      // Storage down at start: the migration runs at the next start (no marker is written). Until
      // then a head without a MAC is refused like any unverified head, so nothing falls open, and
      // requests answer 503 while storage stays down.
      if (!(err instanceof StorageUnavailableError || err instanceof ThrottledError)) throw err;
      logger.warn('legacy head migration postponed: storage unavailable', { code: err.code });
    }
  }
  const signedBy = written?.root;
  const plane = new ControlPlane({
    control,
    base: baseAuthorizer,
    logger,
    ...(signedBy
      ? {
          signedGenerations: () =>
            signedGenerations(settings.dynamo, settings.tables.audit, signedBy, logger),
        }
      : {}),
    ...(settings.control?.policyFreshnessMs !== undefined
      ? { policyFreshnessMs: settings.control.policyFreshnessMs }
      : {}),
    ...(settings.control?.revocationFreshnessMs !== undefined
      ? { revocationFreshnessMs: settings.control.revocationFreshnessMs }
      : {}),
  });
  const branchKeys = root
    ? new BranchKeyProvider({
        root,
        control,
        binding: store.binding,
        ...(settings.keyCache ? { cache: settings.keyCache } : {}),
        ...(settings.now ? { now: clockMs(settings.now) } : {}),
      })
    : undefined;
  const keys: KeyProvider = branchKeys ?? (settings.keys as KeyPorts).provider;
  const keyAdmin = branchKeys
    ? new KeyAdmin({
        keys: branchKeys,
        control,
        authorizer: plane,
        client: settings.dynamo,
        table: settings.tables.secrets,
        binding: store.binding,
        ...(settings.rewrapItemsPerSecond
          ? { rewrap: { itemsPerSecond: settings.rewrapItemsPerSecond } }
          : {}),
      })
    : undefined;
  const now = settings.now ? { now: settings.now } : {};
  const controlAdmin = new ControlAdmin({
    plane,
    control,
    audit,
    requireApproval: settings.control?.requireApproval === true,
    ...now,
  });
  const purger = new Purger({ store, ...now });
  // Grants are MAC'd under the storage-integrity key and bound to the installation, so every
  // function of the installation (API, rotation job) verifies the grants any of them made.
  const grants = new RotationGrants({ key: storageMac, binding: store.binding, ...now });
  const service = new SecretService({
    store,
    envelope: new Envelope(keys),
    // A rotation grant's principal is decided by a hard check, never by the policies in force.
    authorizer: grantScopedAuthorizer(plane),
    grants,
    ...(settings.rotators ? { rotators: settings.rotators } : {}),
    audit,
    purger,
    cursors: macs.cursors,
    ...now,
  });
  const authenticator =
    settings.authn.authenticator ??
    buildAuthenticator({
      config: settings.authn.config,
      logger,
      ...(settings.authn.devIssuerKey ? { devIssuerKey: settings.authn.devIssuerKey } : {}),
      ...(settings.authn.fetch ? { fetch: settings.authn.fetch } : {}),
    });
  const directory = new PrincipalDirectory({
    client: settings.dynamo,
    table: settings.tables.secrets,
    key: storageMac,
    binding: store.binding,
    logger,
    ...now,
  });
  const reports = new AccessReports({
    store,
    // The one authorizer the service decides requests with (the live policy set): a report
    // decides as a request would, revocations included.
    authorizer: plane,
    revocationFor: (principal) => plane.revocationFor(principal) !== undefined,
    directory,
    cursors: macs.cursors,
    configuredGroups: settings.authn.config ? configuredGroups(settings.authn.config) : [],
    ...now,
  });
  const offboarding = new Offboarding({
    admin: controlAdmin,
    reports,
    // The audit table, read by chain (the chain index bounds the window): the same table the
    // trail writes, also when a test gives its own trail.
    audit: new AuditReader(settings.dynamo, settings.tables.audit),
    // The root key this process certifies its chains with (never a key read from the table).
    ...(signedBy ? { auditRootKeys: async () => [await signedBy.publicKeyPem()] } : {}),
    rotation: settings.rotation ?? rotationScheduler(() => service),
    ...now,
  });
  const app = createApp({
    service,
    // Rotation grants are tried first; every other credential goes to the configured authenticator.
    authenticator: new GrantAuthenticator(authenticator, grants, logger),
    audit,
    logger,
    connection: settings.connection,
    control: { plane, admin: controlAdmin },
    directory,
    reports,
    ...(keyAdmin ? { keyAdmin } : {}),
    offboarding,
    grantReader: new GrantReader(store, service),
  });
  const coffer: Coffer = {
    app,
    service,
    store,
    control,
    plane,
    purger,
    authorizer: baseAuthorizer,
    authenticator,
    keys,
    audit,
    directory,
    ...(keyAdmin ? { keyAdmin } : {}),
  };
  return written ? { ...coffer, audit: written.trail, auditRoot: written.root } : coffer;
}
