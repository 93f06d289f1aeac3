import { describe, expect, it } from 'vitest';
import { generateRequest } from '../../lib/cli/actions/generate.js';

describe('coffer generate options', () => {
  it('when a password is asked for, its options become the request and the rest stays out', () => {
    expect(
      generateRequest({
        type: 'password',
        length: 20,
        classes: 'lower, digits',
        exclude: 'l1',
        cas: 0,
        tag: ['a=b'],
      }),
    ).toEqual({
      type: 'password',
      length: 20,
      classes: ['lower', 'digits'],
      exclude: 'l1',
      cas: 0,
      tags: { a: 'b' },
    });
  });

  it('when a certificate is asked for, SANs, CA limits and the issuer go into the request', () => {
    expect(
      generateRequest({
        type: 'certificate',
        cn: 'api.example.com',
        dns: ['api.example.com'],
        ip: ['10.0.0.1'],
        validityDays: 30,
        issuer: 'pki/ca',
        algorithm: 'ed25519',
      }),
    ).toEqual({
      type: 'certificate',
      commonName: 'api.example.com',
      sans: { dns: ['api.example.com'], ip: ['10.0.0.1'] },
      validityDays: 30,
      issuer: 'pki/ca',
      algorithm: 'ed25519',
    });
    expect(
      generateRequest({
        type: 'certificate',
        cn: 'CA',
        validityDays: 365,
        ca: true,
        allowedName: ['*.x.com'],
        maxValidityDays: 90,
      }),
    ).toMatchObject({ ca: true, allowedNames: ['*.x.com'], maxValidityDays: 90 });
  });

  it('when an option belongs to another type or a required one is missing, it is a usage error, not a silent default', () => {
    expect(() => generateRequest({ type: 'keypair', algorithm: 'ed25519', length: 20 })).toThrow(
      '--length does not apply to --type keypair',
    );
    expect(() => generateRequest({ type: 'password', validityDays: 3 })).toThrow(
      '--validity-days does not apply',
    );
    expect(() => generateRequest({ type: 'keypair' })).toThrow('needs --algorithm');
    expect(() => generateRequest({ type: 'certificate', validityDays: 3 })).toThrow('needs --cn');
    expect(() => generateRequest({ type: 'certificate', cn: 'x' })).toThrow('needs --validity-days');
    expect(() => generateRequest({ type: 'password', classes: 'lower,emoji' })).toThrow(/emoji/);
    expect(() => generateRequest({ type: 'password', tag: ['nokey'] })).toThrow(/key=value/);
  });
});
