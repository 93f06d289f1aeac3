import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IntegrityError } from '../errors.js';
import { LocalKeyProvider } from './local.js';

/**
 * The label the storage-integrity MAC key is derived for. It differs from every other label
 * (the audit field key's is `coffer/audit-field-hmac/v1`), so the derived keys are unrelated even
 * when they come from the same KMS HMAC key. Versioned: a new label is a new key, and the version
 * is recorded with every MAC (`mk`), so the key can rotate with old MACs still verifiable.
 */
export const STORAGE_MAC_LABEL_V1 = 'coffer/storage-mac/v1';
/** The key id recorded beside MACs made with the v1 key. */
export const STORAGE_MAC_KEY_V1 = 'storage-v1';

/**
 * The storage-integrity MAC key: it authenticates the items that drive decisions (heads, control
 * records) so that a writer of the secrets table who holds no Coffer key cannot change them. It is
 * separate from data keys: it never wraps anything and is never stored.
 */
export interface StorageMacKey {
  /** The id of the key new MACs are made with, stored beside each MAC. */
  readonly keyId: string;
  /** HMAC-SHA256 of `data` under the current key. */
  mac(data: Uint8Array): Buffer;
  /** Whether `mac` is the MAC of `data` under key `keyId`; an unknown key id is a failure. */
  verify(keyId: string, data: Uint8Array, mac: Uint8Array): boolean;
}

/** An HMAC-SHA256 key ring by id; the last one given makes new MACs. */
export class HmacStorageMacKey implements StorageMacKey {
  readonly keyId: string;
  private readonly keys: Map<string, Buffer>;

  constructor(keys: readonly { readonly id: string; readonly key: Uint8Array }[]) {
    const last = keys[keys.length - 1];
    if (!last) throw new Error('a storage MAC key ring needs at least one key');
    this.keys = new Map();
    for (const { id, key } of keys) {
      if (key.length !== 32) throw new Error('storage MAC keys are 32 bytes');
      // A copy: the caller zeroes its buffer once the ring is built.
      this.keys.set(id, Buffer.from(key));
    }
    this.keyId = last.id;
  }

  mac(data: Uint8Array): Buffer {
    return createHmac('sha256', this.keys.get(this.keyId) as Buffer)
      .update(data)
      .digest();
  }

  verify(keyId: string, data: Uint8Array, mac: Uint8Array): boolean {
    const key = this.keys.get(keyId);
    if (!key || mac.length !== 32) return false;
    const expected = createHmac('sha256', key).update(data).digest();
    return timingSafeEqual(expected, Buffer.from(mac));
  }
}

/** Throws IntegrityError unless `mac` (as read from an item) verifies under `keyId`. */
export function requireMac(key: StorageMacKey, keyId: unknown, data: Uint8Array, mac: unknown): void {
  if (typeof keyId !== 'string' || !(mac instanceof Uint8Array) || !key.verify(keyId, data, mac)) {
    throw new IntegrityError();
  }
}

/**
 * The local storage MAC key: HKDF-SHA256 over the data dir's first root key (`root-0001.key`,
 * which rotation never replaces) with the storage label as info. A table writer without the data
 * dir cannot compute it; rotating the root ring leaves it unchanged, so heads stay valid.
 */
export async function openLocalStorageMacKey(dataDir: string): Promise<HmacStorageMacKey> {
  // Opening the provider makes the first root key when the data dir is new.
  await LocalKeyProvider.open(dataDir);
  const dir = join(dataDir, 'keys');
  const first = (await readdir(dir)).filter((f) => /^root-\d{4}\.key$/.test(f)).sort()[0] as string;
  const root = await readFile(join(dir, first));
  const key = Buffer.from(hkdfSync('sha256', root, 'coffer/storage-mac', STORAGE_MAC_LABEL_V1, 32));
  root.fill(0);
  try {
    return new HmacStorageMacKey([{ id: STORAGE_MAC_KEY_V1, key }]);
  } finally {
    key.fill(0);
  }
}
