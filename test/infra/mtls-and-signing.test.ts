import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CofferApp, createCofferApp } from '../../infra/coffer-app.js';
import { MTLS_API_ID_ENV } from '../../infra/constructs/mtls-api.js';

/*
 * The optional parts of the stack: the mutual TLS domain (issue 14) and enforced code signing
 * (issue 19). Synthesized without bundling (the function code is not what is under test here), but
 * with cdk-nag as the validation plugin, so `app.synth()` itself fails on a finding.
 */

const CERT = 'arn:aws:acm:eu-west-1:111122223333:certificate/1234abcd-12ab-34cd-56ef-1234567890ab';
const OWNERSHIP = 'arn:aws:acm:eu-west-1:111122223333:certificate/9999abcd-12ab-34cd-56ef-1234567890ab';
const PROFILE = 'arn:aws:signer:eu-west-1:444455556666:/signing-profiles/CofferPipeline/a1b2c3d4e5';
const MTLS = { mtlsDomainName: 'coffer-mtls.example.com', mtlsCertificateArn: CERT };

interface Synth {
  readonly coffer: CofferApp;
  readonly template: Template;
}

const dirs: string[] = [];
function synth(context: Record<string, unknown>): Synth {
  const outdir = mkdtempSync(join(tmpdir(), 'coffer-cdk-'));
  dirs.push(outdir);
  const coffer = createCofferApp({ outdir, context: { 'aws:cdk:bundling-stacks': [], ...context } });
  coffer.app.synth();
  return { coffer, template: Template.fromStack(coffer.stack) };
}

/** The stack's bucket, pinned to an uploaded bundle version; the stack makes the signing profile. */
let pinned: Synth;
/** The stack's bucket before the bundle is uploaded; code signing off. */
let firstStep: Synth;
/** An existing bucket, an existing signing profile, and CloudHSM mode (CDK-made provider functions). */
let existing: Synth;
beforeAll(() => {
  pinned = synth({ ...MTLS, mtlsTruststoreVersion: 'Lp3.QW_v2-Zx', codeSigning: 'true' });
  firstStep = synth({ ...MTLS });
  existing = synth({
    ...MTLS,
    mtlsTruststore: 's3://corp-pki-truststores/coffer/ca-bundle.pem',
    mtlsOwnershipCertificateArn: OWNERSHIP,
    codeSigning: true,
    codeSigningProfileVersionArn: PROFILE,
    keyStore: 'cloudhsm',
    cloudHsmClusterId: 'cluster-abcdefghijk',
    cloudHsmKmsUserSecret: 'coffer/kmsuser',
    cloudHsmTrustAnchor: 'test/infra/fixtures/customerCA.crt',
  });
}, 600_000);
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const resolve = (s: Synth, value: unknown) => Stack.of(s.coffer.stack).resolve(value);
const props = (s: Synth, type: string) =>
  Object.values(s.template.findResources(type)).map((r) => r.Properties as Record<string, unknown>);
const apiFunction = (s: Synth) =>
  props(s, 'AWS::Lambda::Function').find((p) => /Coffer API/.test(String(p.Description))) as {
    Environment: { Variables: Record<string, unknown> };
  };

describe('the mutual TLS domain', () => {
  it('is a second HTTP API whose execute-api endpoint is disabled, while the regular API keeps its own', () => {
    const stack = pinned.coffer.stack;
    const mtlsApi = resolve(pinned, stack.mtlsApi?.api.apiId);
    const regular = resolve(pinned, stack.api.api.apiId);
    const apis = pinned.template.findResources('AWS::ApiGatewayV2::Api');
    expect(Object.keys(apis)).toHaveLength(2);
    expect(apis[(mtlsApi as { Ref: string }).Ref]?.Properties.DisableExecuteApiEndpoint).toBe(true);
    expect(apis[(regular as { Ref: string }).Ref]?.Properties.DisableExecuteApiEndpoint).toBeUndefined();
  });

  it('has a regional TLS 1.2 custom domain with the ACM certificate and the truststore pinned to the uploaded version', () => {
    const stack = pinned.coffer.stack;
    pinned.template.resourceCountIs('AWS::ApiGatewayV2::DomainName', 1);
    pinned.template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainName: 'coffer-mtls.example.com',
      DomainNameConfigurations: [
        { CertificateArn: CERT, EndpointType: 'REGIONAL', SecurityPolicy: 'TLS_1_2' },
      ],
      MutualTlsAuthentication: {
        TruststoreUri: resolve(pinned, stack.truststore?.bucket.s3UrlForObject('truststore.pem')),
        TruststoreVersion: 'Lp3.QW_v2-Zx',
      },
    });
  });

  it('maps only the mutual TLS API to the domain, and the regular API to no domain at all', () => {
    const stack = pinned.coffer.stack;
    const mappings = props(pinned, 'AWS::ApiGatewayV2::ApiMapping');
    expect(mappings).toEqual([
      {
        ApiId: resolve(pinned, stack.mtlsApi?.api.apiId),
        DomainName: resolve(pinned, stack.mtlsApi?.domain.name),
        Stage: '$default',
      },
    ]);
  });

  it('routes only /v1/{proxy+} on the mutual TLS API, to the API function, with no IAM route there', () => {
    const stack = pinned.coffer.stack;
    const mtlsApi = resolve(pinned, stack.mtlsApi?.api.apiId);
    const routes = props(pinned, 'AWS::ApiGatewayV2::Route').filter(
      (r) => JSON.stringify(r.ApiId) === JSON.stringify(mtlsApi),
    );
    expect(routes.map((r) => r.RouteKey)).toEqual(['ANY /v1/{proxy+}']);
    const integration = props(pinned, 'AWS::ApiGatewayV2::Integration').find(
      (i) => JSON.stringify(i.ApiId) === JSON.stringify(mtlsApi),
    );
    expect(integration).toMatchObject({
      IntegrationType: 'AWS_PROXY',
      PayloadFormatVersion: '2.0',
      IntegrationUri: resolve(pinned, stack.apiFunction.function.functionArn),
    });
    // The regular API keeps its two routes, and its IAM route is not offered on the mTLS domain.
    const regular = props(pinned, 'AWS::ApiGatewayV2::Route').filter(
      (r) => JSON.stringify(r.ApiId) !== JSON.stringify(mtlsApi),
    );
    expect(regular.map((r) => r.RouteKey).sort()).toEqual(['ANY /iam/v1/{proxy+}', 'ANY /v1/{proxy+}']);
  });

  it(`tells the function the mutual TLS API's id in ${MTLS_API_ID_ENV}, the only events whose clientCert it may read`, () => {
    const stack = pinned.coffer.stack;
    expect(apiFunction(pinned).Environment.Variables[MTLS_API_ID_ENV]).toEqual(
      resolve(pinned, stack.mtlsApi?.api.apiId),
    );
    // Lambda accepts invocations of the function from the mTLS API's route.
    const ref = (resolve(pinned, stack.mtlsApi?.api.apiId) as { Ref: string }).Ref;
    const sources = props(pinned, 'AWS::Lambda::Permission').map((p) => JSON.stringify(p.SourceArn));
    expect(sources.filter((arn) => arn.includes(`"Ref":"${ref}"`))).toHaveLength(1);
  });

  it('logs the verified certificate of each request (subject, issuer, serial), never its PEM, with throttling', () => {
    const stack = pinned.coffer.stack;
    const stage = props(pinned, 'AWS::ApiGatewayV2::Stage').find(
      (st) => JSON.stringify(st.ApiId) === JSON.stringify(resolve(pinned, stack.mtlsApi?.api.apiId)),
    ) as { AccessLogSettings: { Format: string }; DefaultRouteSettings: unknown; StageName: string };
    expect(stage.StageName).toBe('$default');
    expect(stage.DefaultRouteSettings).toEqual({ ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 });
    const format = JSON.parse(stage.AccessLogSettings.Format);
    expect(format).toMatchObject({
      status: '$context.status',
      clientCertSubject: '$context.identity.clientCert.subjectDN',
      clientCertIssuer: '$context.identity.clientCert.issuerDN',
      clientCertSerial: '$context.identity.clientCert.serialNumber',
    });
    expect(stage.AccessLogSettings.Format).not.toMatch(/clientCertPem|querystring|authorization/i);
  });

  it('keeps the truststore in a versioned, encrypted, TLS-only bucket that blocks public access and logs every access', () => {
    const stack = pinned.coffer.stack;
    const bucket = resolve(pinned, stack.truststore?.bucket.bucketName) as { Ref: string };
    const logs = resolve(pinned, stack.truststore?.accessLogs.bucketName) as { Ref: string };
    const buckets = pinned.template.findResources('AWS::S3::Bucket');
    expect(Object.keys(buckets).sort()).toEqual([bucket.Ref, logs.Ref].sort());
    for (const b of Object.values(buckets)) {
      expect(b.DeletionPolicy).toBe('Retain');
      expect(b.Properties).toMatchObject({
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
      });
    }
    expect(buckets[bucket.Ref]?.Properties).toMatchObject({
      VersioningConfiguration: { Status: 'Enabled' },
      LoggingConfiguration: { DestinationBucketName: logs },
    });
    for (const ref of [bucket, logs]) {
      pinned.template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: ref,
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: 'Deny',
              Action: 's3:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            }),
          ]),
        },
      });
    }
  });

  it('before the CA bundle is uploaded, makes only the bucket and says where to upload it', () => {
    firstStep.template.resourceCountIs('AWS::ApiGatewayV2::DomainName', 0);
    firstStep.template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
    firstStep.template.resourceCountIs('AWS::ApiGatewayV2::ApiMapping', 0);
    firstStep.template.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
    });
    expect(apiFunction(firstStep).Environment.Variables[MTLS_API_ID_ENV]).toBeUndefined();
    const outputs = firstStep.template.findOutputs('MtlsTruststoreUri');
    expect(outputs.MtlsTruststoreUri?.Description).toMatch(/mtlsTruststoreVersion/);
    expect(Object.keys(firstStep.template.findOutputs('MtlsUrl'))).toEqual([]);
  });

  it('with an existing truststore, makes no bucket, uses the given S3 URI and the ownership certificate', () => {
    existing.template.resourceCountIs('AWS::S3::Bucket', 0);
    existing.template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainNameConfigurations: [
        Match.objectLike({ CertificateArn: CERT, OwnershipVerificationCertificateArn: OWNERSHIP }),
      ],
      MutualTlsAuthentication: { TruststoreUri: 's3://corp-pki-truststores/coffer/ca-bundle.pem' },
    });
    const domain = props(existing, 'AWS::ApiGatewayV2::DomainName')[0] as {
      MutualTlsAuthentication: Record<string, unknown>;
    };
    expect(domain.MutualTlsAuthentication.TruststoreVersion).toBeUndefined();
    expect(existing.template.findOutputs('MtlsUrl').MtlsUrl?.Value).toBe('https://coffer-mtls.example.com');
  });
});

describe('enforced code signing', () => {
  it('when on, makes a Lambda signing profile and an enforcing code signing config that trusts only it', () => {
    const stack = pinned.coffer.stack;
    pinned.template.resourceCountIs('AWS::Signer::SigningProfile', 1);
    pinned.template.hasResourceProperties('AWS::Signer::SigningProfile', {
      PlatformId: 'AWSLambda-SHA384-ECDSA',
    });
    pinned.template.resourceCountIs('AWS::Lambda::CodeSigningConfig', 1);
    pinned.template.hasResourceProperties('AWS::Lambda::CodeSigningConfig', {
      AllowedPublishers: {
        SigningProfileVersionArns: [resolve(pinned, stack.codeSigning?.profile?.signingProfileVersionArn)],
      },
      CodeSigningPolicies: { UntrustedArtifactOnDeployment: 'Enforce' },
    });
    expect(Object.keys(pinned.template.findOutputs('SigningProfileName'))).toEqual(['SigningProfileName']);
  });

  it('when on, attaches the config to every function in the stack', () => {
    for (const s of [pinned, existing]) {
      const config = resolve(s, s.coffer.stack.codeSigning?.config.attrCodeSigningConfigArn);
      const functions = props(s, 'AWS::Lambda::Function');
      expect(functions.length).toBeGreaterThanOrEqual(3);
      for (const fn of functions) expect(fn.CodeSigningConfigArn, String(fn.Description)).toEqual(config);
    }
    // CloudHSM mode adds CDK's own provider framework functions: they are covered too.
    expect(props(existing, 'AWS::Lambda::Function').length).toBeGreaterThan(
      props(pinned, 'AWS::Lambda::Function').length,
    );
  });

  it('with an existing signing profile version, trusts exactly that one and makes no profile', () => {
    existing.template.resourceCountIs('AWS::Signer::SigningProfile', 0);
    existing.template.hasResourceProperties('AWS::Lambda::CodeSigningConfig', {
      AllowedPublishers: { SigningProfileVersionArns: [PROFILE] },
      CodeSigningPolicies: { UntrustedArtifactOnDeployment: 'Enforce' },
    });
    expect(Object.keys(existing.template.findOutputs('SigningProfileName'))).toEqual([]);
  });

  it('is off by default: no profile, no config, no function carries one', () => {
    firstStep.template.resourceCountIs('AWS::Signer::SigningProfile', 0);
    firstStep.template.resourceCountIs('AWS::Lambda::CodeSigningConfig', 0);
    for (const fn of props(firstStep, 'AWS::Lambda::Function'))
      expect(fn.CodeSigningConfigArn).toBeUndefined();
  });
});

describe('cdk-nag', () => {
  it('passes AwsSolutionsChecks with mTLS and code signing on, with no unacknowledged finding', () => {
    for (const s of [pinned, firstStep, existing]) {
      const report = new AwsSolutionsChecks().validateScope(s.coffer.app);
      expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual(
        [],
      );
    }
  });

  it('acknowledges findings of the new parts only on the route or bucket they are about, each with a reason', () => {
    const acks = pinned.coffer.app.node.findAll().flatMap((node) =>
      node.node.metadata
        .filter((m) => m.type === 'aws:cdk:acknowledged-rules')
        .flatMap((m) =>
          Object.entries(m.data as Record<string, string>).map(([rule, reason]) => ({
            path: node.node.path,
            rule,
            reason,
          })),
        ),
    );
    const added = acks.filter(
      (a) => a.path.startsWith('Coffer/Mtls') || a.path.startsWith('Coffer/Truststore'),
    );
    expect(added.map((a) => `${a.rule.replace(/^Annotation::/, '')} ${a.path}`).sort()).toEqual(
      [
        'AwsSolutions-APIG4 Coffer/Mtls/Api/ANY--v1--{proxy+}',
        'AwsSolutions-S1 Coffer/Truststore/AccessLogs',
      ].sort(),
    );
    for (const a of added) expect(a.reason.length).toBeGreaterThan(60);
  });
});
