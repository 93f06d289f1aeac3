import {
  type AttributeValue,
  type DynamoDBClient,
  QueryCommand,
  type QueryCommandOutput,
  ScanCommand,
  type ScanCommandOutput,
} from '@aws-sdk/client-dynamodb';
import type { Action, Authorizer, FolderResource, Resource } from '../authz/authorizer.js';
import { CofferError, ForbiddenError, InvalidRequestError } from '../errors.js';
import { validatePath } from '../paths.js';
import type { Caller } from '../secrets/service.js';
import { ControlRecordConflict, type ControlRecords } from '../store/control-records.js';
import { CURRENT_SK } from '../store/keys.js';
import { mapStorageError } from '../store/storage-errors.js';
import {
  type BranchKeyProvider,
  type BranchState,
  branchKeyId,
  FLUSH_ID,
  FLUSH_KIND,
  folderRecordId,
  KEYRING_KIND,
  type Keyring,
  KeyStateError,
  parseBranchKeyId,
  ROOT_ID,
  ROOT_KIND,
  type RootPointer,
} from './branch-keys.js';
import {
  listKeyringFolders,
  type RewrapCursor,
  RewrapJob,
  SCAN_ID,
  SCAN_KIND,
  type ScanCounts,
} from './rewrap.js';

/** A root key outside the installation's allow-list. */
export class RootKeyNotAllowedError extends CofferError {
  static override readonly code = 'root_key_not_allowed';
  constructor() {
    super('the root key is not in the allow-list of this installation');
  }
}

/** How long retired key material is kept: point-in-time recovery may restore items that need it. */
export const RETAIN_RETIRED_DAYS = 35;

/** The root folder (as lib/control/admin.ts names it): installation-wide key operations are Cedar `admin` on it. */
export const ROOT_FOLDER: FolderResource = { kind: 'Folder', path: '' };

export interface KeyAdminOptions {
  readonly keys: BranchKeyProvider;
  readonly control: ControlRecords;
  /** Decides every operation. Absent (the scheduled job, which serves no caller): every operation is denied. */
  readonly authorizer?: Authorizer;
  readonly client: DynamoDBClient;
  readonly table: string;
  readonly binding: string;
  readonly rewrap?: { readonly itemsPerSecond?: number; readonly pageSize?: number };
  readonly now?: () => number;
  /** When this process started (for the per-instance counters). */
  readonly startedAt?: string;
}

export interface KeyVersionStatus {
  readonly id: string;
  readonly v: number;
  readonly state: 'active' | BranchState;
  readonly root: string;
  readonly createdAt: string;
  readonly retiredAt?: string;
  readonly destroyedAt?: string;
  /** Secret versions it wraps, from the last finished scan; null before any. */
  readonly secretVersions: number | null;
}

export interface KeyStatus {
  readonly root: {
    readonly active: string;
    readonly keys: readonly {
      readonly keyId: string;
      readonly state: 'active' | 'available' | 'retired';
      /** Branch key versions (not destroyed) it wraps. */
      readonly branchKeys: number;
      /** Secret versions whose data key it wraps directly (written before the hierarchy). */
      readonly secretVersions: number | null;
    }[];
  };
  readonly folders: readonly {
    readonly folder: string;
    readonly active: number;
    readonly versions: KeyVersionStatus[];
  }[];
  readonly lastScan: string | null;
  readonly rewrap: RewrapCursor | null;
  readonly instance: {
    readonly since: string;
    readonly rootOps: { readonly generate: number; readonly decrypt: number; readonly reEncrypt: number };
    readonly cache: { readonly hits: number; readonly misses: number; readonly entries: number };
  };
}

/**
 * Key administration: status, rotate, revert, flush, re-wrap and retire. Every operation is Cedar
 * `admin` on the folder it touches (the root folder `Folder::""` for root and all-folder operations),
 * decided before anything is read, and its audit record names the key ids involved — never key
 * material.
 */
export class KeyAdmin {
  readonly job: RewrapJob;
  private readonly now: () => number;
  private readonly startedAt: string;

  constructor(private readonly options: KeyAdminOptions) {
    this.now = options.now ?? Date.now;
    this.startedAt = options.startedAt ?? new Date(this.now()).toISOString();
    this.job = new RewrapJob({
      client: options.client,
      table: options.table,
      control: options.control,
      keys: options.keys,
      binding: options.binding,
      ...(options.rewrap ?? {}),
      now: this.now,
    });
  }

  async status(caller: Caller): Promise<KeyStatus> {
    this.require(caller, ROOT_FOLDER, []);
    const { keys, control } = this.options;
    const { record: rootRecord, keyId: activeRoot } = await keys.activeRoot();
    const scan = (await control.get<ScanCounts>(SCAN_KIND, SCAN_ID))?.payload;
    const folders = await listKeyringFolders(this.options);
    const folderStatus = [];
    const branchesPerRoot = new Map<string, number>();
    for (const folder of folders) {
      const ring = await keys.readKeyring(folder);
      if (!ring) continue;
      const counted = scan?.counts[folder];
      folderStatus.push({
        folder,
        active: ring.payload.active,
        versions: ring.payload.versions.map((x): KeyVersionStatus => {
          if (x.state !== 'destroyed') branchesPerRoot.set(x.root, (branchesPerRoot.get(x.root) ?? 0) + 1);
          const id = branchKeyId(folder, x.v);
          return {
            id,
            v: x.v,
            state: x.v === ring.payload.active ? 'active' : x.state,
            root: x.root,
            createdAt: x.createdAt,
            ...(x.retiredAt ? { retiredAt: x.retiredAt } : {}),
            ...(x.destroyedAt ? { destroyedAt: x.destroyedAt } : {}),
            secretVersions: scan ? (counted?.[id] ?? 0) : null,
          };
        }),
      });
    }
    const retired = rootRecord?.payload.retired ?? {};
    const rootIds = new Set([activeRoot, ...(rootRecord?.payload.history ?? []), ...Object.keys(retired)]);
    for (const r of branchesPerRoot.keys()) rootIds.add(r);
    const legacy = new Map<string, number>();
    for (const perFolder of Object.values(scan?.counts ?? {})) {
      for (const [kid, n] of Object.entries(perFolder)) {
        if (!parseBranchKeyId(kid)) {
          legacy.set(kid, (legacy.get(kid) ?? 0) + n);
          rootIds.add(kid);
        }
      }
    }
    const rewrap = await this.job.cursor();
    return {
      root: {
        active: activeRoot,
        keys: [...rootIds].map((keyId) => ({
          keyId,
          state: keyId === activeRoot ? 'active' : retired[keyId] ? 'retired' : 'available',
          branchKeys: branchesPerRoot.get(keyId) ?? 0,
          secretVersions: scan ? (legacy.get(keyId) ?? 0) : null,
        })),
      },
      folders: folderStatus,
      lastScan: scan?.at ?? null,
      rewrap: rewrap ?? null,
      instance: {
        since: this.startedAt,
        rootOps: { ...keys.rootOps },
        cache: { ...keys.cacheStats, entries: keys.cache.size },
      },
    };
  }

  /**
   * New branch key versions for one folder or all (each pending until its test wrap/unwrap
   * passes, then active). A folder whose newest version is still pending resumes it instead.
   */
  async rotate(
    caller: Caller,
    folder?: string,
  ): Promise<{ rotated: { folder: string; from: string | null; to: string }[] }> {
    const scope = this.scope(caller, folder);
    const folders = scope === undefined ? await this.allFolders() : [scope];
    const rotated = [];
    for (const f of folders) {
      const ring = await this.options.keys.readKeyring(f);
      const from = ring && ring.payload.active > 0 ? branchKeyId(f, ring.payload.active) : null;
      const pending = ring?.payload.versions.find((x) => x.state === 'pending');
      let v: number;
      if (ring && pending) {
        v = pending.v;
        await this.options.keys.finishPending(f, ring, v);
      } else {
        v = (await this.options.keys.createVersion(f, ring, { activate: true })).v;
      }
      rotated.push({ folder: f, from, to: branchKeyId(f, v) });
      this.note(caller, [...(from ? [from] : []), branchKeyId(f, v)]);
    }
    return { rotated };
  }

  /**
   * A new root: locally a new ring key; in AWS an allow-listed key (`kmsKeyId`), or without one
   * KMS RotateKeyOnDemand of the current key. Branch keys are then re-wrapped under the new root
   * (KMS ReEncrypt: no plaintext here for KMS-to-KMS).
   */
  async rotateRoot(
    caller: Caller,
    kmsKeyId?: string,
  ): Promise<{ from: string; to: string; branchKeys: number; onDemand?: true }> {
    this.require(caller, ROOT_FOLDER, []);
    const { keys } = this.options;
    const { record, keyId: from } = await keys.activeRoot();
    let to: string;
    if (kmsKeyId !== undefined) {
      if (!keys.root.isAllowed(kmsKeyId)) {
        this.note(caller, [from, kmsKeyId]);
        throw new RootKeyNotAllowedError();
      }
      to = kmsKeyId;
    } else if (keys.root.createKey) {
      to = await keys.root.createKey();
    } else if (keys.root.rotateOnDemand) {
      this.note(caller, [from]);
      await keys.root.rotateOnDemand(from);
      return { from, to: from, branchKeys: 0, onDemand: true };
    } else {
      throw new InvalidRequestError('this root key provider cannot make a new key; name one');
    }
    this.note(caller, [from, to]);
    if (to === from) return { from, to, branchKeys: 0 };
    // Test the new root before anything depends on it.
    await this.testRoot(to);
    const history = [...(record?.payload.history ?? []), from];
    const { [to]: _unretired, ...retired } = record?.payload.retired ?? {};
    await this.options.control.put<RootPointer>(
      ROOT_KIND,
      ROOT_ID,
      { active: to, history, retired },
      record?.generation ?? 0,
    );
    const branchKeys = await this.job.rewrapBranchKeys();
    return { from, to, branchKeys };
  }

  /** Makes the previous branch key version (or root) active again. */
  async revert(
    caller: Caller,
    options: { folder?: string; root?: boolean },
  ): Promise<Record<string, unknown>> {
    if (options.root) {
      this.require(caller, ROOT_FOLDER, []);
      const { record, keyId: from } = await this.options.keys.activeRoot();
      const history = [...(record?.payload.history ?? [])];
      const to = history.pop();
      this.note(caller, to ? [from, to] : [from]);
      if (!record || to === undefined) throw new KeyStateError('there is no previous root key to revert to');
      if (record.payload.retired[to]) throw new KeyStateError('the previous root key is retired');
      await this.options.control.put<RootPointer>(
        ROOT_KIND,
        ROOT_ID,
        { ...record.payload, active: to, history },
        record.generation,
      );
      const branchKeys = await this.job.rewrapBranchKeys();
      return { root: { from, to, branchKeys } };
    }
    const scope = this.scope(caller, options.folder);
    const folders = scope === undefined ? await this.allFolders() : [scope];
    const reverted = [];
    for (const f of folders) {
      const ring = await this.options.keys.readKeyring(f);
      const history = [...(ring?.payload.history ?? [])];
      const to = history.pop();
      if (!ring || to === undefined) {
        if (scope !== undefined) throw new KeyStateError('there is no previous branch key to revert to');
        continue;
      }
      const target = ring.payload.versions.find((x) => x.v === to);
      if (target?.state !== 'ready') throw new KeyStateError('the previous branch key is not usable');
      const from = branchKeyId(f, ring.payload.active);
      await this.options.control.put<Keyring>(
        KEYRING_KIND,
        folderRecordId(f),
        { ...ring.payload, active: to, history },
        ring.generation,
      );
      reverted.push({ folder: f, from, to: branchKeyId(f, to) });
      this.note(caller, [from, branchKeyId(f, to)]);
    }
    return { reverted };
  }

  /** Empties this instance's cache now and every other's within the flush bound (the flush record). */
  async flush(caller: Caller): Promise<{ generation: number }> {
    this.require(caller, ROOT_FOLDER, []);
    const { control, keys } = this.options;
    for (let attempt = 0; attempt < 5; attempt++) {
      const record = await control.get<{ at: string }>(FLUSH_KIND, FLUSH_ID);
      try {
        const next = await control.put(
          FLUSH_KIND,
          FLUSH_ID,
          { at: new Date(this.now()).toISOString() },
          record?.generation ?? 0,
        );
        keys.flushLocal();
        keys.noteFlush(next.generation);
        return { generation: next.generation };
      } catch (err) {
        if (!(err instanceof ControlRecordConflict)) throw err;
      }
    }
    throw new KeyStateError('the flush record keeps changing; retry');
  }

  /** Runs the re-wrap pass of a scope for at most `budgetMs` (the CLI calls again until done). */
  async rewrap(
    caller: Caller,
    options: { folder?: string; budgetMs?: number },
  ): Promise<RewrapCursor | undefined> {
    const scope = this.scope(caller, options.folder);
    await this.destroyExpired();
    const cursor = await this.job.run({
      ...(scope !== undefined ? { folder: scope } : {}),
      // Within an API function's time limit (15 s): the CLI calls again until the pass is done.
      budgetMs: options.budgetMs ?? 8_000,
    });
    const active = [];
    for (const f of scope !== undefined ? [scope] : await this.allFolders()) {
      const ring = await this.options.keys.readKeyring(f);
      if (ring && ring.payload.active > 0) active.push(branchKeyId(f, ring.payload.active));
    }
    this.note(caller, active);
    return cursor;
  }

  /**
   * Retires a branch key version (`bk:<folder>:<n>`) or a root key: refused while it is active,
   * or while a fresh scan finds any secret version (or, for a root, any branch key) that still
   * needs it. The wrapped material is kept RETAIN_RETIRED_DAYS, then destroyed by the re-wrap job.
   */
  async retire(caller: Caller, id: string): Promise<{ retired: string; destroyAfter: string }> {
    const branch = parseBranchKeyId(id);
    const destroyAfter = new Date(this.now() + RETAIN_RETIRED_DAYS * 86_400_000).toISOString();
    if (branch) {
      this.require(caller, folderResource(branch.folder), [id]);
      caller.audit.path = `${branch.folder}/`;
      const ring = await this.options.keys.readKeyring(branch.folder);
      const entry = ring?.payload.versions.find((x) => x.v === branch.v);
      if (!ring || !entry) throw new KeyStateError('no such branch key');
      if (ring.payload.active === branch.v)
        throw new KeyStateError('the active branch key cannot be retired');
      if (entry.state === 'retired' || entry.state === 'destroyed')
        return { retired: id, destroyAfter: entry.retiredAt ?? destroyAfter };
      if ((await this.countReferences(id, branch.folder)) > 0) {
        throw new KeyStateError('secret versions still use this key; re-wrap first');
      }
      await this.options.control.put<Keyring>(
        KEYRING_KIND,
        folderRecordId(branch.folder),
        {
          ...ring.payload,
          history: ring.payload.history.filter((v) => v !== branch.v),
          versions: ring.payload.versions.map((x) =>
            x.v === branch.v ? { ...x, state: 'retired', retiredAt: new Date(this.now()).toISOString() } : x,
          ),
        },
        ring.generation,
      );
      return { retired: id, destroyAfter };
    }
    this.require(caller, ROOT_FOLDER, [id]);
    const { keys, control } = this.options;
    if (!keys.root.isAllowed(id)) throw new KeyStateError('no such root key');
    const { record, keyId: active } = await keys.activeRoot();
    if (id === active) throw new KeyStateError('the active root key cannot be retired');
    for (const f of await listKeyringFolders(this.options)) {
      const ring = await keys.readKeyring(f);
      if (ring?.payload.versions.some((x) => x.root === id && x.state !== 'destroyed')) {
        throw new KeyStateError('branch keys are still wrapped by this root key; re-wrap first');
      }
    }
    if ((await this.countReferences(id, undefined)) > 0) {
      throw new KeyStateError('secret versions still use this key; re-wrap first');
    }
    await control.put<RootPointer>(
      ROOT_KIND,
      ROOT_ID,
      {
        active,
        history: (record?.payload.history ?? []).filter((k) => k !== id),
        retired: { ...(record?.payload.retired ?? {}), [id]: new Date(this.now()).toISOString() },
      },
      record?.generation ?? 0,
    );
    return { retired: id, destroyAfter };
  }

  /** Drops the wrapped material of branch keys retired more than RETAIN_RETIRED_DAYS ago. */
  async destroyExpired(): Promise<string[]> {
    const cutoff = this.now() - RETAIN_RETIRED_DAYS * 86_400_000;
    const destroyed: string[] = [];
    for (const f of await listKeyringFolders(this.options)) {
      const ring = await this.options.keys.readKeyring(f);
      if (!ring) continue;
      const due = ring.payload.versions.filter(
        (x) => x.state === 'retired' && x.retiredAt !== undefined && Date.parse(x.retiredAt) < cutoff,
      );
      if (due.length === 0) continue;
      const at = new Date(this.now()).toISOString();
      await this.options.control.put<Keyring>(
        KEYRING_KIND,
        folderRecordId(f),
        {
          ...ring.payload,
          versions: ring.payload.versions.map((x) => {
            if (!due.includes(x)) return x;
            const { wrapped: _w, ...rest } = x;
            return { ...rest, state: 'destroyed', destroyedAt: at };
          }),
        },
        ring.generation,
      );
      destroyed.push(...due.map((x) => branchKeyId(f, x.v)));
    }
    return destroyed;
  }

  private async testRoot(keyId: string): Promise<void> {
    const { keys } = this.options;
    // The branch-key context's four keys (the IAM grant requires exactly those), naming no folder.
    const ctx = {
      'coffer:table': this.options.binding,
      'coffer:purpose': 'root-key-test',
      'coffer:folder': '/',
      'coffer:branch-version': '0',
    };
    keys.rootOps.generate += 1;
    const made = await keys.root.generate(keyId, ctx);
    keys.rootOps.decrypt += 1;
    const back = await keys.root.decrypt({ wrapped: made.wrapped, keyId }, ctx);
    const same = Buffer.compare(Buffer.from(back), Buffer.from(made.plaintext)) === 0;
    made.plaintext.fill(0);
    back.fill(0);
    if (!same) throw new KeyStateError('the new root key failed its test wrap and unwrap');
  }

  /** Secret versions whose item names `kid` (a fresh scan; in one folder when given). */
  private async countReferences(kid: string, folder: string | undefined): Promise<number> {
    let count = 0;
    let start: Record<string, AttributeValue> | undefined;
    // Current items (copies of a version's value) count too: a key they still need stays.
    const values: Record<string, AttributeValue> = {
      ':v': { S: 'V#' },
      ':c': { S: CURRENT_SK },
      ':kid': { S: kid },
    };
    let filter = '(begins_with(sk, :v) OR sk = :c) AND kid = :kid AND attribute_exists(wk)';
    if (folder !== undefined) {
      filter += ' AND (pk = :exact OR begins_with(pk, :under))';
      values[':exact'] = { S: `S#${folder}` };
      values[':under'] = { S: `S#${folder}/` };
    }
    do {
      let out: ScanCommandOutput;
      try {
        out = await this.options.client.send(
          new ScanCommand({
            TableName: this.options.table,
            FilterExpression: filter,
            ExpressionAttributeValues: values,
            Select: 'COUNT',
            ConsistentRead: true,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        );
      } catch (err) {
        throw mapStorageError(err);
      }
      count += out.Count ?? 0;
      start = out.LastEvaluatedKey;
    } while (start);
    return count;
  }

  /** Every folder with secrets or a keyring (first path segments). */
  private async allFolders(): Promise<string[]> {
    const folders = new Set(await listKeyringFolders(this.options));
    let start: Record<string, AttributeValue> | undefined;
    do {
      let out: QueryCommandOutput;
      try {
        out = await this.options.client.send(
          new QueryCommand({
            TableName: this.options.table,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: { ':pk': { S: 'ROOTS' } },
            ConsistentRead: true,
            ...(start ? { ExclusiveStartKey: start } : {}),
          }),
        );
      } catch (err) {
        throw mapStorageError(err);
      }
      for (const item of out.Items ?? []) {
        const sk = item.sk?.S;
        if (sk?.startsWith('R#')) folders.add(sk.slice(2));
      }
      start = out.LastEvaluatedKey;
    } while (start);
    return [...folders].sort();
  }

  /** Authorizes a folder-or-all operation; returns the folder, validated. */
  private scope(caller: Caller, folder: string | undefined): string | undefined {
    if (folder === undefined) {
      this.require(caller, ROOT_FOLDER, []);
      return undefined;
    }
    const name = validatePath(folder);
    if (name.includes('/'))
      throw new InvalidRequestError('a key folder is a top-level folder (one path segment)');
    this.require(caller, folderResource(name), []);
    return name;
  }

  private require(caller: Caller, resource: FolderResource, keyIds: readonly string[]): void {
    const action: Action = 'admin';
    caller.audit.action = action;
    caller.audit.path = resource.path;
    const authorizer = this.options.authorizer;
    if (!authorizer) throw new ForbiddenError();
    caller.audit.policySetHash = authorizer.policySetHash;
    if (keyIds.length > 0) this.note(caller, keyIds);
    const decision = authorizer.authorize({
      principal: caller.principal,
      action,
      resource: resource as Resource,
      context: caller.context,
    });
    caller.audit.decision = decision;
    if (!decision.allowed) throw new ForbiddenError();
  }

  private note(caller: Caller, keyIds: readonly string[]): void {
    caller.audit.keyIds = [...new Set([...(caller.audit.keyIds ?? []), ...keyIds])];
  }
}

const folderResource = (folder: string): FolderResource => ({ kind: 'Folder', path: `${folder}/` });
