import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { createCofferApp } from '../../infra/coffer-app.js';
import { checkContextKeys, readSettings, SETTING_KEYS, SettingsError } from '../../infra/settings.js';

/* The deployment's context settings: checked before any construct is made (infra/settings.ts). */

const CLOUDHSM_CONTEXT = {
  keyStore: 'cloudhsm',
  cloudHsmClusterId: 'cluster-abcdefghijk',
  cloudHsmKmsUserSecret: 'coffer/kmsuser',
  cloudHsmTrustAnchor: 'test/infra/fixtures/customerCA.crt',
};

describe('the deployment settings', () => {
  const ctx = (values: Record<string, unknown>) => (key: string) => values[key];

  it('when a CloudHSM value is malformed, it says which and what it should look like, never echoing a secret name that looks like an ARN', () => {
    expect(() => readSettings(ctx({ ...CLOUDHSM_CONTEXT, cloudHsmClusterId: 'cluster-abc' }))).toThrow(
      'context cloudHsmClusterId must be a CloudHSM cluster id like cluster-jxhlf7644ne, got "cluster-abc"',
    );
    // The example the docs used to give: `1` is not in CloudHSM's base32 alphabet.
    expect(() =>
      readSettings(ctx({ ...CLOUDHSM_CONTEXT, cloudHsmClusterId: 'cluster-abc123defgh' })),
    ).toThrow(/must be a CloudHSM cluster id/);
    const arn = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:coffer/kmsuser-AbCdEf';
    const err = (() => {
      try {
        readSettings(ctx({ ...CLOUDHSM_CONTEXT, cloudHsmKmsUserSecret: arn }));
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err?.message).toMatch(/must be the name of a Secrets Manager secret/);
    expect(err?.message).not.toContain('secretsmanager:');
    expect(
      readSettings(ctx({ ...CLOUDHSM_CONTEXT, cloudHsmClusterId: 'cluster-jxhlf7644ne' })).cloudHsm
        ?.clusterId,
    ).toBe('cluster-jxhlf7644ne');
  });

  it('when logRetentionDays is out of range, the message lists only values it accepts', () => {
    expect(() => readSettings(ctx({ logRetentionDays: '42' }))).toThrow(/\(1, 3, 5, 7, .*, 3653\)$/);
  });

  it('when keyStore is cloudhsm without a cluster, secret or trust anchor, synthesis stops with what is missing', () => {
    expect(() => readSettings(ctx({ keyStore: 'cloudhsm' }))).toThrow(/cloudHsmClusterId/);
    expect(() => readSettings(ctx({ ...CLOUDHSM_CONTEXT, cloudHsmKmsUserSecret: undefined }))).toThrow(
      /cloudHsmKmsUserSecret/,
    );
    expect(() => readSettings(ctx({ ...CLOUDHSM_CONTEXT, cloudHsmTrustAnchor: undefined }))).toThrow(
      /cloudHsmTrustAnchor/,
    );
  });

  it('refuses an unknown key store, CloudHSM settings in kms mode and a retention CloudWatch does not offer', () => {
    expect(() => readSettings(ctx({ keyStore: 'hsm' }))).toThrow(SettingsError);
    expect(() => readSettings(ctx({ cloudHsmClusterId: 'cluster-abcdefghijk' }))).toThrow(/only used with/);
    expect(() => readSettings(ctx({ logRetentionDays: '42' }))).toThrow(/logRetentionDays/);
  });

  it('when a setting is spelled with other capitals, synthesis stops naming the right one instead of ignoring it', () => {
    expect(() => createCofferApp({ context: { keystore: 'cloudhsm' } })).toThrow(
      'context keystore is not a Coffer setting; did you mean keyStore?',
    );
    expect(() => createCofferApp({ context: { CloudHsmClusterID: 'cluster-abcdefghijk' } })).toThrow(
      /did you mean cloudHsmClusterId\?/,
    );
    // CDK's own context and feature flags are no concern of Coffer's.
    expect(() =>
      checkContextKeys(['@aws-cdk/core:stackRelativeExports', 'aws:cdk:bundling-stacks']),
    ).not.toThrow();
  });

  it('the deploy commands in README.md and docs/ use only settings that exist, with values synthesis accepts', () => {
    let checked = 0;
    for (const file of [
      'README.md',
      'docs/deploy.md',
      'docs/cloudhsm.md',
      'docs/operations.md',
      'docs/mtls.md',
    ]) {
      if (!existsSync(file)) continue;
      for (const [, key, value] of readFileSync(file, 'utf8').matchAll(/-c ([A-Za-z]+)=([^\s`|]+)/g)) {
        if (key === 'key') continue; // "Pass them with `-c key=value`"
        expect(SETTING_KEYS as readonly string[], `${file}: -c ${key}`).toContain(key);
        // Paths of the operator's own files cannot be checked here.
        if (key === 'cofferConfig' || key === 'cloudHsmTrustAnchor' || /[<>…]/.test(value as string))
          continue;
        // A setting that only works beside another is checked with that other one set.
        const base =
          (key as string).startsWith('cloudHsm') || value === 'cloudhsm'
            ? CLOUDHSM_CONTEXT
            : (key as string).startsWith('mtls')
              ? MTLS
              : key === 'codeSigningProfileVersionArn'
                ? { codeSigning: 'true' }
                : {};
        expect(
          () => readSettings(ctx({ ...base, [key as string]: value })),
          `${file}: -c ${key}=${value}`,
        ).not.toThrow();
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(5);
    const deploy = readFileSync('docs/deploy.md', 'utf8');
    for (const key of SETTING_KEYS) expect(deploy, `docs/deploy.md documents ${key}`).toContain(`\`${key}\``);
  });

  it('checkpoints every 5 minutes by default, the unsealed tail docs/audit.md promises', () => {
    expect(readSettings(ctx({})).checkpointMinutes).toBe(5);
    expect(readFileSync('docs/audit.md', 'utf8')).toMatch(/one checkpoint interval \(5 minutes by default/);
    expect(readSettings(ctx({ checkpointMinutes: '60' })).checkpointMinutes).toBe(60);
    expect(() => readSettings(ctx({ checkpointMinutes: '4' }))).toThrow(
      'context checkpointMinutes must be a whole number from 5 to 1440, got "4"',
    );
  });

  const CERT = 'arn:aws:acm:eu-west-1:111122223333:certificate/1234abcd-12ab-34cd-56ef-1234567890ab';
  const MTLS = { mtlsDomainName: 'coffer-mtls.example.com', mtlsCertificateArn: CERT };

  it('reads the mutual TLS domain: off without mtlsDomainName, the stack bucket unless an S3 URI is given', () => {
    expect(readSettings(ctx({})).mtls).toBeUndefined();
    expect(readSettings(ctx(MTLS)).mtls).toEqual({
      domainName: 'coffer-mtls.example.com',
      certificateArn: CERT,
    });
    expect(
      readSettings(
        ctx({
          ...MTLS,
          mtlsTruststore: 's3://corp.pki-trust/coffer/ca.pem',
          mtlsTruststoreVersion: 'a.B_c-1',
        }),
      ).mtls,
    ).toEqual({
      domainName: 'coffer-mtls.example.com',
      certificateArn: CERT,
      truststore: { bucketName: 'corp.pki-trust', key: 'coffer/ca.pem' },
      truststoreVersion: 'a.B_c-1',
    });
  });

  it('when a mutual TLS value is missing or malformed, synthesis stops with one line saying which', () => {
    expect(() => readSettings(ctx({ mtlsDomainName: 'coffer-mtls.example.com' }))).toThrow(
      'mtlsDomainName needs context mtlsCertificateArn: the ARN of the ACM certificate for that domain',
    );
    expect(() => readSettings(ctx({ ...MTLS, mtlsDomainName: '*.example.com' }))).toThrow(
      /^context mtlsDomainName must be a lowercase host name like coffer-mtls\.example\.com, got "\*\.example\.com"$/,
    );
    expect(() => readSettings(ctx({ ...MTLS, mtlsDomainName: 'Coffer.Example.com' }))).toThrow(
      /mtlsDomainName/,
    );
    expect(() =>
      readSettings(ctx({ ...MTLS, mtlsCertificateArn: 'arn:aws:iam::111122223333:server-certificate/x' })),
    ).toThrow(/^context mtlsCertificateArn must be an ACM certificate ARN/);
    expect(() => readSettings(ctx({ ...MTLS, mtlsOwnershipCertificateArn: 'cert-1' }))).toThrow(
      /^context mtlsOwnershipCertificateArn must be an ACM certificate ARN/,
    );
    expect(() =>
      readSettings(ctx({ ...MTLS, mtlsTruststore: 'https://bucket.s3.amazonaws.com/ca.pem' })),
    ).toThrow(/^context mtlsTruststore must be s3:\/\/<bucket>\/<key> of the CA bundle/);
    expect(() => readSettings(ctx({ ...MTLS, mtlsTruststore: 's3://bucket-only' }))).toThrow(
      /mtlsTruststore/,
    );
    expect(() => readSettings(ctx({ ...MTLS, mtlsTruststoreVersion: 'two words' }))).toThrow(
      'context mtlsTruststoreVersion must be an S3 object version id (VersionId)',
    );
    for (const key of [
      'mtlsCertificateArn',
      'mtlsOwnershipCertificateArn',
      'mtlsTruststore',
      'mtlsTruststoreVersion',
    ]) {
      expect(() => readSettings(ctx({ [key]: 'x' }))).toThrow(
        `context ${key} is only used with mtlsDomainName`,
      );
    }
  });

  it('reads code signing: off by default, on with codeSigning=true, with an existing profile version if given', () => {
    expect(readSettings(ctx({})).codeSigning).toBeUndefined();
    expect(readSettings(ctx({ codeSigning: 'false' })).codeSigning).toBeUndefined();
    expect(readSettings(ctx({ codeSigning: 'true' })).codeSigning).toEqual({});
    // `-c codeSigning=true` is a string; a boolean in cdk.json is a boolean.
    expect(readSettings(ctx({ codeSigning: true })).codeSigning).toEqual({});
    const arn = 'arn:aws:signer:eu-west-1:444455556666:/signing-profiles/CofferPipeline/a1b2c3d4e5';
    expect(readSettings(ctx({ codeSigning: 'true', codeSigningProfileVersionArn: arn })).codeSigning).toEqual(
      {
        profileVersionArn: arn,
      },
    );
    expect(() => readSettings(ctx({ codeSigning: 'yes' }))).toThrow(
      'context codeSigning must be true or false, got "yes"',
    );
    expect(() => readSettings(ctx({ codeSigningProfileVersionArn: arn }))).toThrow(
      'context codeSigningProfileVersionArn is only used with codeSigning=true',
    );
    // A profile ARN without its version is not what a code signing config takes.
    expect(() =>
      readSettings(
        ctx({
          codeSigning: 'true',
          codeSigningProfileVersionArn:
            'arn:aws:signer:eu-west-1:444455556666:/signing-profiles/CofferPipeline',
        }),
      ),
    ).toThrow(/^context codeSigningProfileVersionArn must be a signing profile version ARN/);
  });

  it('when a new setting is spelled with other capitals, synthesis names the right one', () => {
    expect(() => checkContextKeys(['mtlsdomainname'])).toThrow(
      'context mtlsdomainname is not a Coffer setting; did you mean mtlsDomainName?',
    );
    expect(() => checkContextKeys(['CodeSigning'])).toThrow(/did you mean codeSigning\?/);
    expect(() => checkContextKeys(['MTLSTruststoreVersion'])).toThrow(/did you mean mtlsTruststoreVersion\?/);
  });

  it("validates the Coffer configuration file with the app's own parser", () => {
    expect(() => readSettings(ctx({ cofferConfig: 'test/infra/fixtures/customerCA.crt' }))).toThrow(
      /cofferConfig/,
    );
  });

  it('sets the point-in-time recovery window of both tables from pitrRecoveryDays (1 to 35)', () => {
    expect(readSettings(ctx({})).pitrRecoveryDays).toBe(35);
    expect(() => readSettings(ctx({ pitrRecoveryDays: '36' }))).toThrow(
      'context pitrRecoveryDays must be a whole number from 1 to 35, got "36"',
    );
    const outdir = mkdtempSync(join(tmpdir(), 'coffer-cdk-'));
    try {
      const { stack } = createCofferApp({
        outdir,
        context: { pitrRecoveryDays: '7', 'aws:cdk:bundling-stacks': [] },
      });
      const tables = Object.values(Template.fromStack(stack).findResources('AWS::DynamoDB::Table'));
      expect(tables.map((t) => t.Properties.PointInTimeRecoverySpecification)).toEqual([
        { PointInTimeRecoveryEnabled: true, RecoveryPeriodInDays: 7 },
        { PointInTimeRecoveryEnabled: true, RecoveryPeriodInDays: 7 },
      ]);
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  }, 120_000);
});
