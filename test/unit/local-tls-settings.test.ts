import { describe, expect, it } from 'vitest';
import { localSettings } from '../../lib/config.js';
import { ConfigError } from '../../lib/errors.js';

describe('localSettings: COFFER_TLS_*', () => {
  it('when neither certificate nor key is set, the server speaks HTTP', () => {
    expect(localSettings({}, '/srv').tls).toBeUndefined();
  });

  it('when both are set, the server speaks HTTPS with the files resolved from the working dir', () => {
    expect(
      localSettings({ COFFER_TLS_CERT: 'tls/server.pem', COFFER_TLS_KEY: '/etc/k.pem' }, '/srv').tls,
    ).toEqual({ cert: '/srv/tls/server.pem', key: '/etc/k.pem' });
    expect(
      localSettings(
        { COFFER_TLS_CERT: 's.pem', COFFER_TLS_KEY: 'k.pem', COFFER_TLS_CLIENT_CA: 'clients.pem' },
        '/srv',
      ).tls,
    ).toEqual({ cert: '/srv/s.pem', key: '/srv/k.pem', clientCa: '/srv/clients.pem' });
  });

  it('when one of certificate and key is set without the other, or a client CA without both, it is one config error', () => {
    const error = (env: Record<string, string>) => {
      try {
        localSettings(env, '/srv');
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error('expected a ConfigError');
    };
    expect(error({ COFFER_TLS_CERT: 's.pem' })).toBe(
      'COFFER_TLS_CERT is set without COFFER_TLS_KEY: HTTPS needs both the certificate and its key',
    );
    expect(error({ COFFER_TLS_KEY: 'k.pem' })).toBe(
      'COFFER_TLS_KEY is set without COFFER_TLS_CERT: HTTPS needs both the certificate and its key',
    );
    expect(error({ COFFER_TLS_CLIENT_CA: 'ca.pem' })).toMatch(
      /^COFFER_TLS_CLIENT_CA needs COFFER_TLS_CERT and COFFER_TLS_KEY/,
    );
  });
});
