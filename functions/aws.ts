import { KMSClient } from '@aws-sdk/client-kms';
import type { KmsKeys } from '../lib/compose.js';
import { FIELD_HMAC_LABEL, type LambdaSettings } from './env.js';

/*
 * The AWS adapters every Coffer function shares, named from the environment's settings: the
 * composition root (lib/compose.ts) builds them.
 */

/** The KMS client of a function: the adapters retry KMS themselves (jittered, with error mapping), so the SDK must not. */
export function defaultKmsClient(): KMSClient {
  return new KMSClient({ maxAttempts: 1 });
}

/** Where the keys are in AWS: the data key, older data keys, the root audit key and the field HMAC key. */
export function kmsKeys(settings: LambdaSettings, client: KMSClient): KmsKeys {
  return {
    kind: 'kms',
    client,
    keyId: settings.secretsKeyArn,
    previousKeyIds: settings.previousSecretsKeyArns,
    rootKeyArns: settings.rootKeyArns ?? [],
    // Every root key must be in the stack's account: the secrets key's.
    account: settings.secretsKeyArn.split(':')[4] ?? '',
    auditKeyId: settings.auditKeyArn,
    ...(settings.fieldHmacKeyArn
      ? { fieldHmac: { keyId: settings.fieldHmacKeyArn, label: FIELD_HMAC_LABEL } }
      : {}),
  };
}

/** Audit lines go to stdout, one JSON line each, so that CloudWatch Logs holds a second copy. */
export function stdoutSink(line: string): void {
  process.stdout.write(`${line}\n`);
}
