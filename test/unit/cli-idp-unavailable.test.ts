import { describe, expect, it } from 'vitest';
import { reportError } from '../../lib/cli/error-report.js';
import type { CliIo } from '../../lib/cli/io.js';
import { clientError } from '../../packages/client/src/errors.js';

function io() {
  let stderr = '';
  return {
    io: { stderr: { write: (s: string) => (stderr += s) } } as unknown as CliIo,
    stderr: () => stderr,
  };
}

describe('the CLI report of an identity provider outage', () => {
  it('when the server answers 503 identity_provider_unavailable, it says the IdP is unreachable, not that the issuer is untrusted', () => {
    const out = io();
    const err = clientError('identity_provider_unavailable', 503, 'identity provider unavailable', 'r1');
    const code = reportError(err, out.io, false, { token: { value: 'x.y.z', source: 'COFFER_TOKEN' } });
    expect(out.stderr()).toContain('cannot reach the identity provider');
    expect(out.stderr()).toContain('COFFER_TOKEN');
    expect(out.stderr()).not.toContain('issuer it trusts');
    expect(code).not.toBe(0);
  });
});
