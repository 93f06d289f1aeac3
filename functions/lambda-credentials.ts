/**
 * The AWS SDK's default credential chain, as the Lambda bundles have it: the execution role's
 * credentials, which the Lambda runtime puts in the environment. The bundles alias
 * `@aws-sdk/credential-provider-node` to this file (infra/constructs/coffer-function.ts), so that
 * the chain's other links (SSO, profiles, web identity, instance metadata, with the nested STS,
 * SSO and sign-in clients they bring, about 100 KB) are not in them: a Lambda function never uses
 * them.
 */

interface Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
  readonly accountId?: string;
}

/** Same name and shape as the SDK's `defaultProvider`, which the clients' runtime config calls. */
export function defaultProvider(_init: unknown = {}): () => Promise<Credentials> {
  return async () => {
    const env = process.env;
    const accessKeyId = env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
    if (!accessKeyId || !secretAccessKey) {
      // A fixed sentence: the SDK wraps it, and the API maps it to key_store_unavailable (503).
      throw new Error('no AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)');
    }
    const expiration = env.AWS_CREDENTIAL_EXPIRATION ? new Date(env.AWS_CREDENTIAL_EXPIRATION) : undefined;
    return {
      accessKeyId,
      secretAccessKey,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
      ...(expiration ? { expiration } : {}),
      ...(env.AWS_ACCOUNT_ID ? { accountId: env.AWS_ACCOUNT_ID } : {}),
    };
  };
}
