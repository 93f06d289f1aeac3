import { mkdtemp, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeFields } from '../../lib/crypto/canonical.js';
import { Envelope, encryptionContextFor } from '../../lib/crypto/envelope.js';
import { LocalKeyProvider } from '../../lib/keys/local.js';
import type { DataKey, EncryptionContext, KeyProvider, WrappedKey } from '../../lib/keys/provider.js';

const id = { table: 't', path: 'a/b', version: 1 };

/** Counts calls and records the contexts the envelope sends, around a real local provider. */
class RecordingProvider implements KeyProvider {
  readonly name = 'local';
  contexts: EncryptionContext[] = [];
  issued: Uint8Array[] = [];
  constructor(private readonly inner: LocalKeyProvider) {}
  get keyId() {
    return this.inner.keyId;
  }
  async generateDataKey(context: EncryptionContext): Promise<DataKey> {
    this.contexts.push(context);
    const key = await this.inner.generateDataKey(context);
    this.issued.push(key.plaintext);
    return key;
  }
  decryptDataKey(wrapped: WrappedKey, context: EncryptionContext) {
    this.contexts.push(context);
    return this.inner.decryptDataKey(wrapped, context);
  }
  reEncrypt(wrapped: WrappedKey, context: EncryptionContext) {
    return this.inner.reEncrypt(wrapped, context);
  }
}

describe('Envelope', () => {
  it('when a value is sealed, each version gets its own data key, bound to table, path and version', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'env-'));
    const keys = new RecordingProvider(await LocalKeyProvider.open(dir));
    const envelope = new Envelope(keys);
    const s1 = await envelope.seal('secret', id);
    const s2 = await envelope.seal('secret', { ...id, version: 2 });
    expect(Buffer.from(s1.wrappedKey).equals(Buffer.from(s2.wrappedKey))).toBe(false);
    expect(Buffer.from(s1.ciphertext).equals(Buffer.from(s2.ciphertext))).toBe(false);
    expect(keys.contexts[0]).toEqual({ 'coffer:table': 't', 'coffer:path': 'a/b', 'coffer:version': '1' });
    // The plaintext data key is zeroed once the value is sealed.
    expect(keys.issued.every((k) => k.every((b) => b === 0))).toBe(true);
    expect(await envelope.open(s1, id)).toBe('secret');
    await expect(envelope.open(s1, { ...id, version: 2 })).rejects.toMatchObject({ code: 'integrity_error' });
    await expect(envelope.open(s1, { ...id, path: 'a/c' })).rejects.toMatchObject({
      code: 'integrity_error',
    });
    await expect(envelope.open(s1, { ...id, table: 'other' })).rejects.toMatchObject({
      code: 'integrity_error',
    });
    // The wrapped key of one version does not open another version's value.
    await expect(
      envelope.open({ ...s2, wrappedKey: s1.wrappedKey }, { ...id, version: 2 }),
    ).rejects.toMatchObject({
      code: 'integrity_error',
    });
  });

  it('when the root key is rotated, old values still open and re-wrapping moves them to the new key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'env-'));
    const before = await LocalKeyProvider.open(dir);
    const sealed = await new Envelope(before).seal('rotate-me', id);
    const newKeyId = await LocalKeyProvider.rotate(dir);
    const after = await LocalKeyProvider.open(dir);
    expect(after.keyId).toBe(newKeyId);
    expect(after.keyId).not.toBe(before.keyId);
    const envelope = new Envelope(after);
    expect(await envelope.open(sealed, id)).toBe('rotate-me');
    const rewrapped = await envelope.rewrap(sealed, id);
    expect(rewrapped.keyId).toBe(newKeyId);
    expect(await envelope.open(rewrapped, id)).toBe('rotate-me');
    await expect(envelope.rewrap(sealed, { ...id, version: 9 })).rejects.toMatchObject({
      code: 'integrity_error',
    });
    expect(((await stat(join(dir, 'keys/root-0002.key'))).mode & 0o777).toString(8)).toBe('600');
  });

  it('when another data dir’s key is used, values do not open', async () => {
    const a = await LocalKeyProvider.open(await mkdtemp(join(tmpdir(), 'env-')));
    const b = await LocalKeyProvider.open(await mkdtemp(join(tmpdir(), 'env-')));
    const sealed = await new Envelope(a).seal('x', id);
    await expect(new Envelope(b).open(sealed, id)).rejects.toMatchObject({ code: 'integrity_error' });
  });

  it('encodes fields without ambiguity', () => {
    expect(encodeFields('d', ['a/b', '1']).equals(encodeFields('d', ['a', '/b1']))).toBe(false);
    expect(encryptionContextFor(id)['coffer:path']).toBe('a/b');
  });
});
