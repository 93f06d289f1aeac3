import type { HttpRequest } from '@smithy/protocol-http';
import type { SignatureV4 } from '@smithy/signature-v4';
import { CofferClientError } from './errors.js';

/** AWS credentials, as the AWS SDK's credential providers return them. */
export interface AwsCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
}

export type AwsCredentialsProvider = () => Promise<AwsCredentials>;

/** SigV4 signing for workloads calling the API Gateway IAM route (`/iam/v1`). */
export interface IamAuthOptions {
  /**
   * The API's region. Default: taken from an `execute-api` endpoint's host name
   * (`<id>.execute-api.<region>.amazonaws.com`); required for a custom domain name. Pass
   * `process.env.AWS_REGION` from your own code (the client reads no environment).
   */
  readonly region?: string;
  /**
   * Static credentials or a provider. Default: the AWS SDK's default credential chain
   * (`@aws-sdk/credential-provider-node`: environment, SSO, web identity, shared files, ECS/EC2
   * metadata), which caches credentials and refreshes them before they expire.
   */
  readonly credentials?: AwsCredentials | AwsCredentialsProvider;
  /** The signing name. Default `execute-api` (API Gateway). */
  readonly service?: string;
}

const EXECUTE_API_HOST = /\.execute-api\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$/;

/** The region of an `execute-api` endpoint, from its host name. */
export function regionOfEndpoint(endpoint: URL): string | undefined {
  return EXECUTE_API_HOST.exec(endpoint.hostname)?.[1];
}

let defaultChain: Promise<AwsCredentialsProvider> | undefined;

/** The AWS SDK's default chain, loaded on first use: bearer-token users never load it. */
function defaultCredentials(): Promise<AwsCredentialsProvider> {
  defaultChain ??= import('@aws-sdk/credential-provider-node').then(
    (m) => m.defaultProvider() as AwsCredentialsProvider,
  );
  return defaultChain;
}

/**
 * The signing libraries, loaded on the first signed request: a client that uses bearer tokens (the
 * CLI's `get`, most workloads off AWS) never pays for loading them at start.
 */
let signingLibraries:
  | Promise<{
      SignatureV4: typeof SignatureV4;
      HttpRequest: typeof HttpRequest;
      Sha256: typeof import('@aws-crypto/sha256-js').Sha256;
    }>
  | undefined;

function loadSigningLibraries(): NonNullable<typeof signingLibraries> {
  signingLibraries ??= Promise.all([
    import('@smithy/signature-v4'),
    import('@smithy/protocol-http'),
    import('@aws-crypto/sha256-js'),
  ]).then(([sig, http, sha]) => ({
    SignatureV4: sig.SignatureV4,
    HttpRequest: http.HttpRequest,
    Sha256: sha.Sha256,
  }));
  return signingLibraries;
}

/** Signs requests with SigV4 (`@smithy/signature-v4`), headers only: nothing goes into the URL. */
export class SigV4RequestSigner {
  private readonly options: IamAuthOptions;
  private readonly region: string;
  private signer: SignatureV4 | undefined;

  constructor(options: IamAuthOptions, endpoint: URL) {
    const region = options.region ?? regionOfEndpoint(endpoint);
    if (!region) {
      throw new CofferClientError(
        'invalid_config',
        0,
        'auth.iam.region is required for an endpoint that is not an execute-api host name',
      );
    }
    this.options = options;
    this.region = region;
  }

  private async signerFor(libs: Awaited<ReturnType<typeof loadSigningLibraries>>): Promise<SignatureV4> {
    const credentials = this.options.credentials;
    this.signer ??= new libs.SignatureV4({
      service: this.options.service ?? 'execute-api',
      region: this.region,
      sha256: libs.Sha256,
      credentials:
        typeof credentials === 'function'
          ? credentials
          : credentials
            ? async () => credentials
            : async () => (await defaultCredentials())(),
    });
    return this.signer;
  }

  /**
   * The headers to send: the given ones plus `authorization`, `x-amz-date`,
   * `x-amz-content-sha256` (the body's hash) and, for temporary credentials,
   * `x-amz-security-token`. `host` is signed and left for fetch to send from the URL.
   */
  async sign(
    method: string,
    url: URL,
    headers: Readonly<Record<string, string>>,
    body: string | undefined,
  ): Promise<Record<string, string>> {
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const libs = await loadSigningLibraries();
    const request = new libs.HttpRequest({
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query,
      headers: { ...headers, host: url.host },
      ...(body !== undefined ? { body } : {}),
    });
    let signed: HttpRequest;
    try {
      signed = (await (await this.signerFor(libs)).sign(request)) as HttpRequest;
    } catch {
      // The provider's own message may name files or roles; the caller needs the fact alone.
      throw new CofferClientError(
        'credentials_unavailable',
        0,
        'no AWS credentials available to sign the request',
      );
    }
    const { host: _host, ...out } = signed.headers;
    return out;
  }
}
