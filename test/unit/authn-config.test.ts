import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CofferConfig, loadConfig, parseConfig } from '../../lib/config-file.js';
import { ConfigError } from '../../lib/errors.js';

const minimal = `
issuers:
  - alias: corp
    issuer: https://login.example.com
    audiences: coffer
`;

function configError(text: string, env: Record<string, string> = {}): string {
  try {
    parseConfig(text, { source: 'test.yaml', env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('config file (COFFER_CONFIG)', () => {
  it('when an issuer gives only alias, issuer and audience, it fills the documented defaults', () => {
    const config = parseConfig(minimal, { env: {} });
    expect(config).toEqual<CofferConfig>({
      issuers: [
        {
          alias: 'corp',
          issuer: 'https://login.example.com',
          audiences: ['coffer'],
          algorithms: ['RS256'],
          requireAtJwt: false,
          claims: { id: 'sub', groups: 'groups', attributes: {} },
          groupMapping: {},
          jwksRefreshSeconds: 60,
          jwksMaxStaleSeconds: 86_400,
          clockSkewSeconds: 60,
          allowHttpLoopback: false,
        },
      ],
    });
  });

  it('when the file is empty or absent, it trusts no configured issuer', async () => {
    expect(parseConfig('', { env: {} })).toEqual({ issuers: [] });
    expect(await loadConfig({}, tmpdir())).toEqual({ issuers: [] });
  });

  it('when the full example of docs/authentication.md is loaded, it validates', async () => {
    const doc = await readFile(join(import.meta.dirname, '../../docs/authentication.md'), 'utf8');
    const yaml = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(yaml).toBeDefined();
    const config = parseConfig(yaml as string, { source: 'docs', env: {} });
    expect(config.issuers.map((i) => i.alias)).toEqual(['corp', 'partner']);
    const corp = config.issuers[0];
    expect(corp?.claims.groups).toEqual(['realm_access', 'roles']);
    expect(corp?.groupMapping['coffer-admins']).toEqual(['admins']);
    expect(corp?.login?.clientId).toBe('coffer-cli');
  });

  it('when the same configuration is JSON, it reads the same as YAML', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-config-'));
    const json = {
      issuers: [{ alias: 'corp', issuer: 'https://login.example.com', audiences: ['coffer'] }],
    };
    await writeFile(join(dir, 'coffer.json'), JSON.stringify(json));
    await writeFile(join(dir, 'coffer.yaml'), minimal);
    const fromJson = await loadConfig({ COFFER_CONFIG: 'coffer.json' }, dir);
    const fromYaml = await loadConfig({ COFFER_CONFIG: join(dir, 'coffer.yaml') }, '/');
    expect(fromJson).toEqual(fromYaml);
  });

  it('when a JSON file holds several issuers (with a byte order mark), each is read; a JSON mistake names the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-config-'));
    const json = {
      issuers: [
        { alias: 'corp', issuer: 'https://login.example.com', audiences: 'coffer', algorithms: ['ES256'] },
        {
          alias: 'partner',
          issuer: 'https://auth.partner.example/',
          audiences: ['a', 'b'],
          requireAtJwt: true,
          groupMapping: { deployers: 'partner-deploy' },
        },
      ],
    };
    await writeFile(join(dir, 'coffer.json'), `\uFEFF${JSON.stringify(json, null, 2)}`);
    const config = await loadConfig({ COFFER_CONFIG: 'coffer.json' }, dir);
    expect(config.issuers.map((i) => [i.alias, i.issuer, i.audiences, i.algorithms, i.requireAtJwt])).toEqual(
      [
        ['corp', 'https://login.example.com', ['coffer'], ['ES256'], false],
        ['partner', 'https://auth.partner.example/', ['a', 'b'], ['RS256'], true],
      ],
    );
    expect(config.issuers[1]?.groupMapping).toEqual({ deployers: ['partner-deploy'] });
    await writeFile(join(dir, 'broken.json'), '{"issuers": [,]}');
    await expect(loadConfig({ COFFER_CONFIG: 'broken.json' }, dir)).rejects.toThrow(
      `configuration file ${join(dir, 'broken.json')} is not valid JSON`,
    );
  });

  it('when COFFER_CONFIG names a missing file, it says which file', async () => {
    await expect(loadConfig({ COFFER_CONFIG: '/nonexistent/coffer.yaml' }, '/')).rejects.toThrow(
      'cannot read COFFER_CONFIG file /nonexistent/coffer.yaml (ENOENT)',
    );
  });

  it('when an algorithm is symmetric or none, it names the field and the allowed list', () => {
    for (const alg of ['HS256', 'none']) {
      const message = configError(`${minimal}    algorithms: [RS256, ${alg}]\n`);
      expect(message).toContain('issuers.0.algorithms.1');
      expect(message).toContain('RS256');
    }
  });

  it('when a single algorithm is written as a string, it is a list of one; a symmetric one is still refused', () => {
    expect(parseConfig(`${minimal}    algorithms: ES256\n`).issuers[0]?.algorithms).toEqual(['ES256']);
    expect(configError(`${minimal}    algorithms: HS256\n`)).toContain(
      'issuers.0.algorithms.0: must be one of RS256',
    );
    expect(configError(`${minimal}    algorithms: []\n`)).toContain('issuers.0.algorithms');
  });

  it('when a field is missing or of the wrong shape, the message names the field, the issuer and what is expected', () => {
    expect(configError('issuers: [{issuer: "https://a.example", audiences: x}]')).toBe(
      'invalid configuration (test.yaml):\n  - issuers.0.alias: required (a string)',
    );
    expect(configError('issuers: [{alias: a, audiences: x}, {alias: b, issuer: "https://b.example"}]')).toBe(
      'invalid configuration (test.yaml):\n' +
        '  - issuers.0.issuer: required (a string) (issuer "a")\n' +
        '  - issuers.1.audiences: required: an audience, or a list of 1-20 audiences (strings of 1-256 characters) (issuer "b")',
    );
    expect(configError(`${minimal}    claims: {groups: 5}\n`)).toContain(
      'issuers.0.claims.groups: must be a claim name, or a list of 1-8 names',
    );
    expect(configError(`${minimal}    groupMapping: {admins: 5}\n`)).toContain(
      'issuers.0.groupMapping.admins: must be a Coffer group name, or a list',
    );
    expect(configError(`${minimal}    login: {}\n`)).toContain(
      'issuers.0.login.clientId: required (a string) (issuer "corp")',
    );
  });

  it('when an issuer is http on a non-loopback host, or loopback without the flag, it is refused', () => {
    expect(configError('issuers: [{alias: a, issuer: "http://idp.example.com", audiences: x}]')).toContain(
      'issuers.0.issuer: must use https',
    );
    expect(configError('issuers: [{alias: a, issuer: "http://127.0.0.1:9000", audiences: x}]')).toContain(
      'allowHttpLoopback',
    );
    const ok = parseConfig(
      'issuers: [{alias: a, issuer: "http://127.0.0.1:9000", audiences: x, allowHttpLoopback: true}]',
    );
    expect(ok.issuers[0]?.allowHttpLoopback).toBe(true);
  });

  it('when aliases are reserved or repeated, or an issuer appears twice, it is refused', () => {
    expect(configError('issuers: [{alias: dev, issuer: "https://a.example", audiences: x}]')).toContain(
      'issuers.0.alias: this alias is reserved',
    );
    expect(configError('issuers: [{alias: arn, issuer: "https://a.example", audiences: x}]')).toContain(
      'reserved',
    );
    const twice = configError(
      'issuers: [{alias: a, issuer: "https://a.example", audiences: x}, {alias: a, issuer: "https://a.example", audiences: x}]',
    );
    expect(twice).toContain('issuers.1.alias: duplicate alias');
    expect(twice).toContain('issuers.1.issuer: duplicate issuer');
  });

  it('when a key is misspelt, it is refused rather than ignored', () => {
    expect(configError(`${minimal}    groupMaping: {a: b}\n`)).toContain('issuers.0');
    expect(configError(`${minimal}isuers: []\n`)).toContain('Unrecognized key');
  });

  it('when the skew is over 60 s, group names are invalid or the YAML has duplicate keys, it is refused', () => {
    expect(configError(`${minimal}    clockSkewSeconds: 120\n`)).toContain('issuers.0.clockSkewSeconds');
    expect(configError(`${minimal}    groupMapping: {eng: ["bad group"]}\n`)).toContain('group names');
    expect(configError('issuers: []\nissuers: []\n')).toContain('not valid YAML');
    expect(configError('[1, 2]')).toContain('one object');
  });

  it('when COFFER_OIDC_ISSUER is set, it defines an issuer from the environment alone', () => {
    const config = parseConfig('', {
      env: {
        COFFER_OIDC_ISSUER: 'https://login.example.com',
        COFFER_OIDC_AUDIENCE: 'coffer, coffer-api',
        COFFER_OIDC_ALGORITHMS: 'ES256,RS256',
        COFFER_OIDC_REQUIRE_AT_JWT: 'true',
        COFFER_OIDC_GROUPS_CLAIM: 'roles',
        COFFER_OIDC_GROUP_MAP: 'eng=engineers,ops=operators,ops=oncall',
        COFFER_JWKS_REFRESH_SECONDS: '120',
      },
    });
    expect(config.issuers).toEqual([
      {
        alias: 'oidc',
        issuer: 'https://login.example.com',
        audiences: ['coffer', 'coffer-api'],
        algorithms: ['ES256', 'RS256'],
        requireAtJwt: true,
        claims: { id: 'sub', groups: 'roles', attributes: {} },
        groupMapping: { eng: ['engineers'], ops: ['operators', 'oncall'] },
        jwksRefreshSeconds: 120,
        jwksMaxStaleSeconds: 86_400,
        clockSkewSeconds: 60,
        allowHttpLoopback: false,
      },
    ]);
  });

  it('when COFFER_OIDC_ALIAS names a file issuer, the env overrides its fields only', () => {
    const config = parseConfig(`${minimal}    groupMapping: {a: [b]}\n    jwksRefreshSeconds: 30\n`, {
      env: { COFFER_OIDC_ALIAS: 'corp', COFFER_OIDC_AUDIENCE: 'other', COFFER_JWKS_REFRESH_SECONDS: '999' },
    });
    expect(config.issuers).toHaveLength(1);
    expect(config.issuers[0]?.audiences).toEqual(['other']);
    expect(config.issuers[0]?.groupMapping).toEqual({ a: ['b'] });
    // The file's own interval wins over the global default.
    expect(config.issuers[0]?.jwksRefreshSeconds).toBe(30);
  });

  it('when env overrides are incomplete or malformed, it says which variable', () => {
    expect(configError('', { COFFER_OIDC_AUDIENCE: 'x' })).toContain(
      'COFFER_OIDC_AUDIENCE needs COFFER_OIDC_ISSUER',
    );
    expect(configError('', { COFFER_OIDC_ALIAS: 'nope' })).toContain('COFFER_OIDC_ALIAS');
    expect(
      configError('', { COFFER_OIDC_ISSUER: 'https://a.example', COFFER_OIDC_GROUP_MAP: 'nonsense' }),
    ).toContain('COFFER_OIDC_GROUP_MAP');
    expect(configError('', { COFFER_JWKS_REFRESH_SECONDS: '0' })).toContain('COFFER_JWKS_REFRESH_SECONDS');
    // Validation applies to env values too.
    expect(configError('', { COFFER_OIDC_ISSUER: 'https://a.example' })).toContain('issuers.0.audiences');
  });
});
