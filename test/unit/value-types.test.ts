import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkValue, splitNames, utf8Text } from '../../lib/secrets/value-types.js';

const bytes = (s: string) => Buffer.from(s, 'utf8');

describe('value types', () => {
  it('when node prints SANs, they are split on the separators outside quotes', () => {
    expect(splitNames(undefined)).toEqual([]);
    expect(splitNames('DNS:a.example, IP Address:127.0.0.1')).toEqual([
      'DNS:a.example',
      'IP Address:127.0.0.1',
    ]);
    expect(splitNames('DNS:a, URI:"spiffe://x/y, z", DNS:b')).toEqual([
      'DNS:a',
      'URI:"spiffe://x/y, z"',
      'DNS:b',
    ]);
  });

  it('when bytes are not UTF-8, only binary takes them; a byte-order mark is kept', () => {
    expect(utf8Text(Buffer.from([0xff]))).toBeUndefined();
    expect(utf8Text(Buffer.from([0xef, 0xbb, 0xbf, 0x61]))).toBe('\ufeffa');
    expect(checkValue('binary', Buffer.from([0xff]))).toEqual({});
    expect(() => checkValue('password', Buffer.from([0xff]))).toThrow(
      expect.objectContaining({ code: 'value_not_text' }),
    );
  });

  it('when a json value has a "__proto__" or "constructor" field of strings, it is an ordinary field', () => {
    expect(checkValue('json', bytes('{"__proto__":"x","constructor":"y"}'))).toEqual({});
    expect(() => checkValue('json', bytes('{"__proto__":{}}'))).toThrow(
      expect.objectContaining({ code: 'invalid_value' }),
    );
  });

  it('when a keypair is PKCS#1 RSA, it is read; an encrypted private key is refused', () => {
    const k = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const value = {
      private_key: String(k.privateKey.export({ type: 'pkcs1', format: 'pem' })),
      public_key: String(k.publicKey.export({ type: 'pkcs1', format: 'pem' })),
    };
    expect(checkValue('keypair', bytes(JSON.stringify(value))).keypair?.keyType).toBe('rsa');
    const encrypted = String(
      k.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'p' }),
    );
    expect(() => checkValue('keypair', bytes(JSON.stringify({ ...value, private_key: encrypted })))).toThrow(
      expect.objectContaining({ code: 'invalid_value' }),
    );
  });
});
