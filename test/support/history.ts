/*
 * A history check in the style of Jepsen: clients record every operation's invocation, completion
 * and result; afterwards a checker compares the history with the final state. An operation is
 * certain only when it was acknowledged (2xx). A 503, a 409, a timeout or a dropped connection is
 * indeterminate: the write may or may not have happened, and the checker accepts either.
 */

export type OpKind = 'put' | 'put-cas' | 'delete' | 'restore' | 'read';

export interface Op {
  readonly client: number;
  readonly key: string;
  readonly kind: OpKind;
  /** The value a put wrote: unique per put, so a read names the write it saw. */
  readonly value?: string;
  readonly cas?: number;
  readonly invokedAt: number;
  completedAt: number;
  /** HTTP status, or 0 when no answer came (timeout, connection failure). */
  status: number;
  code?: string;
  /** A put's acknowledged version, or the version a read returned. */
  version?: number;
  /** The value a read returned. */
  readValue?: string;
}

/** A key's state after the faults have stopped: every stored version and its value. */
export interface FinalKey {
  readonly versions: ReadonlyMap<number, string>;
  readonly minVersion: number;
  readonly latest: number;
}

export type Call = (
  method: string,
  route: string,
  body?: unknown,
) => Promise<{ status: number; body: unknown }>;

export interface WorkloadOptions {
  readonly keys: readonly string[];
  readonly clients: number;
  readonly opsPerClient: number;
  readonly random?: () => number;
  /** A prefix for values, unique to the run. */
  readonly tag: string;
}

function errorCode(body: unknown): string | undefined {
  const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Runs `clients` concurrent clients, each doing `opsPerClient` random operations one after the
 * other: reads (40%), puts (25%), puts with the last version it saw as `cas` (20%), deletes (8%)
 * and restores (7%). Returns the history.
 */
export async function runWorkload(call: Call, options: WorkloadOptions): Promise<Op[]> {
  const random = options.random ?? Math.random;
  const history: Op[] = [];
  let serial = 0;
  const client = async (id: number) => {
    const seen = new Map<string, number>();
    for (let i = 0; i < options.opsPerClient; i++) {
      const key = options.keys[Math.floor(random() * options.keys.length)] as string;
      const roll = random();
      const kind: OpKind =
        roll < 0.4
          ? 'read'
          : roll < 0.65
            ? 'put'
            : roll < 0.85
              ? 'put-cas'
              : roll < 0.93
                ? 'delete'
                : 'restore';
      const value = kind === 'put' || kind === 'put-cas' ? `${options.tag}-${id}-${serial++}` : undefined;
      const cas = kind === 'put-cas' ? (seen.get(key) ?? 0) : undefined;
      const op: Op = {
        client: id,
        key,
        kind,
        ...(value !== undefined ? { value } : {}),
        ...(cas !== undefined ? { cas } : {}),
        invokedAt: performance.now(),
        completedAt: Number.NaN,
        status: 0,
      };
      history.push(op);
      try {
        const route = `/v1/secrets/${key}`;
        const res =
          kind === 'read'
            ? await call('GET', route)
            : kind === 'delete'
              ? await call('DELETE', route)
              : kind === 'restore'
                ? await call('POST', `/v1/restore/${key}`)
                : await call('PUT', route, { value, ...(cas !== undefined ? { cas } : {}) });
        op.status = res.status;
        const code = errorCode(res.body);
        if (code) op.code = code;
        const body = res.body as { version?: unknown; value?: unknown } | undefined;
        if (res.status === 200 && typeof body?.version === 'number') {
          op.version = body.version;
          seen.set(key, body.version);
        }
        if (kind === 'read' && res.status === 200 && typeof body?.value === 'string')
          op.readValue = body.value;
      } catch {
        op.status = 0;
      }
      op.completedAt = performance.now();
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return history;
}

/** Reads a key's final state through the API (faults off): restores it if it ended deleted. */
export async function readFinal(call: Call, key: string): Promise<FinalKey | undefined> {
  let meta = await call('GET', `/v1/meta/${key}`);
  if (meta.status === 404) return undefined;
  if ((meta.body as { deletedAt?: string }).deletedAt) {
    await call('POST', `/v1/restore/${key}`);
    meta = await call('GET', `/v1/meta/${key}`);
  }
  const body = meta.body as { currentVersion: number; versions: { version: number; destroyed: boolean }[] };
  const versions = new Map<number, string>();
  for (const v of body.versions) {
    const res = await call('GET', `/v1/secrets/${key}?version=${v.version}`);
    if (res.status !== 200) throw new Error(`final read of ${key} v${v.version}: ${res.status}`);
    versions.set(v.version, (res.body as { value: string }).value);
  }
  const numbers = [...versions.keys()];
  return { versions, minVersion: Math.min(...numbers), latest: body.currentVersion };
}

const isPut = (op: Op) => op.kind === 'put' || op.kind === 'put-cas';
const acknowledged = (op: Op) => op.status >= 200 && op.status < 300;

/**
 * Checks a history against the final state, per key. Returns the violations (empty: consistent).
 * - every acknowledged put is stored, under the version it was told, with its value;
 * - no version was acknowledged to two puts, and no value is stored twice (no write applied twice);
 * - versions are gapless from the oldest kept to the latest;
 * - versions are monotonic in real time: a put acknowledged before another was invoked has the
 *   lower version; an acknowledged cas put got version cas + 1;
 * - every read returned a value some put wrote (invoked before the read completed), under the
 *   version that value is stored at;
 * - every answer is 2xx, 404, 409 or 503, or no answer (a timeout): never another 4xx or a 500.
 */
export function checkHistory(
  history: readonly Op[],
  finals: ReadonlyMap<string, FinalKey | undefined>,
): string[] {
  const problems: string[] = [];
  for (const op of history) {
    if (![0, 200, 404, 409, 503].includes(op.status)) {
      problems.push(`${op.kind} ${op.key} by ${op.client}: unexpected status ${op.status} ${op.code ?? ''}`);
    }
  }
  for (const [key, final] of finals) {
    const ops = history.filter((o) => o.key === key);
    const puts = ops.filter(isPut);
    const acked = puts.filter(acknowledged);
    if (!final) {
      if (acked.length > 0) problems.push(`${key}: ${acked.length} acknowledged puts but the key is gone`);
      continue;
    }
    const byValue = new Map<string, number>();
    for (const [version, value] of final.versions) {
      const other = byValue.get(value);
      if (other !== undefined) problems.push(`${key}: value ${value} stored as v${other} and v${version}`);
      byValue.set(value, version);
      if (!puts.some((p) => p.value === value))
        problems.push(`${key}: v${version} holds a value no put wrote`);
    }
    for (let v = final.minVersion; v <= final.latest; v++) {
      if (!final.versions.has(v))
        problems.push(`${key}: gap at v${v} (kept v${final.minVersion}..v${final.latest})`);
    }
    const ackedVersions = new Map<number, Op>();
    for (const p of acked) {
      const version = p.version as number;
      const twin = ackedVersions.get(version);
      if (twin) problems.push(`${key}: v${version} acknowledged to ${twin.value} and ${p.value}`);
      ackedVersions.set(version, p);
      if (final.versions.get(version) !== p.value) {
        problems.push(
          `${key}: acknowledged ${p.value} as v${version}, stored ${final.versions.get(version) ?? 'nothing'}`,
        );
      }
      if (p.kind === 'put-cas' && version !== (p.cas as number) + 1) {
        problems.push(`${key}: cas ${p.cas} put acknowledged as v${version}`);
      }
    }
    for (const a of acked) {
      for (const b of acked) {
        if (a.completedAt < b.invokedAt && (a.version as number) >= (b.version as number)) {
          problems.push(`${key}: v${a.version} acknowledged before v${b.version} was invoked`);
        }
      }
    }
    for (const r of ops.filter((o) => o.kind === 'read' && acknowledged(o))) {
      const writer = puts.find((p) => p.value === r.readValue);
      if (!writer) {
        problems.push(`${key}: read returned a value no put wrote`);
        continue;
      }
      if (writer.invokedAt > r.completedAt)
        problems.push(`${key}: read saw ${r.readValue} before it was written`);
      const stored = byValue.get(r.readValue as string);
      if (stored === undefined) problems.push(`${key}: read saw ${r.readValue}, which is not stored`);
      else if (stored !== r.version) {
        problems.push(`${key}: read saw ${r.readValue} as v${r.version}, stored as v${stored}`);
      }
    }
  }
  return problems;
}
