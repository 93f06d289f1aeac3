import type { X509Certificate } from 'node:crypto';

/**
 * One principal model for every way in. Cedar sees `Coffer::User::"<id>"`,
 * `Coffer::Role::"<id>"` or `Coffer::Workload::"<id>"`, member of `Coffer::Group::"<g>"` for each
 * group.
 */
export type PrincipalType = 'User' | 'Role' | 'Workload';

/**
 * How the caller proved who it is: `oidc` (an issuer's JWT, a person's or a workload's), `iam`
 * (SigV4 via API Gateway), `dev` (local dev issuer), `mtls` (a verified client certificate),
 * `grant` (a rotation grant handed to an external rotator for one step).
 */
export type AuthMethod = 'oidc' | 'iam' | 'dev' | 'mtls' | 'grant';

/**
 * What a rotation grant (lib/secrets/rotators/grants.ts) lets an external rotator do: read one
 * stage of one secret at one version, during one step, until `expiresAt` (seconds since the epoch).
 */
export interface GrantScope {
  readonly path: string;
  readonly version: number;
  readonly step: 'setSecret' | 'testSecret' | 'revertSecret';
  readonly stage: 'pending' | 'previous';
  readonly expiresAt: number;
}

/** What kind of credential a workload presented: an OIDC token (CI, Kubernetes) or a client certificate. */
export type WorkloadKind = 'oidc' | 'certificate';

export interface Principal {
  readonly type: PrincipalType;
  /**
   * `<issuer alias>:<sub>` for OIDC and dev tokens of people; the IAM role or user ARN for IAM
   * callers; a workload mapping's rendered id template (`gha:octo-org/app:production`) or
   * `cert:<issuer DN>:<subject DN>` for workloads (docs/workload-identity.md).
   */
  readonly id: string;
  /**
   * Coffer groups, only ever from an issuer's group mapping (dev issuer: one to one) or a workload
   * mapping's configured groups.
   */
  readonly groups: readonly string[];
  /**
   * String attributes (Cedar tags) from configured claims (OIDC), the caller's account and session
   * (IAM), or the certificate's SANs, serial and fingerprint (mTLS).
   */
  readonly attributes: Readonly<Record<string, string>>;
  readonly authMethod: AuthMethod;
  /**
   * The issuer alias for OIDC and dev tokens (people and workloads); the issuer DN (RFC 4514) of a
   * client certificate.
   */
  readonly issuer?: string;
  /** Workloads only: which credential made the principal. */
  readonly kind?: WorkloadKind;
  /** Certificate workloads only: the SHA-256 fingerprint (`AB:CD:…`), for the audit record. */
  readonly fingerprint?: string;
  /**
   * When the credential was issued, in seconds since the epoch: a token's `iat`, a certificate's
   * notBefore. Absent for IAM callers. Read by `--tokens-issued-before` revocations only.
   */
  readonly issuedAt?: number;
  /**
   * Rotation grants only (`authMethod: 'grant'`): the one read the grant allows. Such a principal
   * is never decided by Cedar; a hard check allows that read and nothing else.
   */
  readonly grant?: GrantScope;
}

/** What an Authenticator needs from a request; adapters fill it, the authenticator decides. */
export interface AuthRequest {
  /** Every Authorization header value as received (more than one is refused). */
  readonly authorization: readonly string[];
  /** The URL path, so that the IAM prefix can be told apart from `/v1`. */
  readonly path: string;
  /**
   * The caller ARN that API Gateway's IAM authorizer set in the Lambda event
   * (`requestContext.authorizer.iam`). Never taken from a header.
   */
  readonly iamCaller?: IamCaller;
  /**
   * The client certificate the connection presented, as the TLS listener verified it or as API
   * Gateway's mutual-TLS domain put it in the Lambda event (`requestContext.authentication`).
   * Never taken from a header. Used only when the request has no Authorization header.
   */
  readonly clientCertificate?: ClientCertificateInput;
  /** The request's id, so that the log line of a refusal can be matched with its audit record. */
  readonly requestId?: string;
}

export interface IamCaller {
  readonly userArn: string;
  readonly accountId?: string;
  readonly callerId?: string;
  readonly principalOrgId?: string;
}

/** The authentication port. Throws UnauthenticatedError (always the same sentence) on any failure. */
export interface Authenticator {
  authenticate(request: AuthRequest): Promise<Principal>;
}

/** The shape of API Gateway's `requestContext.authentication.clientCert` (HTTP API, mutual TLS). */
export interface ApiGatewayClientCert {
  readonly clientCertPem?: unknown;
  readonly subjectDN?: unknown;
  readonly issuerDN?: unknown;
  readonly serialNumber?: unknown;
  readonly validity?: { readonly notBefore?: unknown; readonly notAfter?: unknown } | null;
}

/**
 * A verified client certificate, as an adapter hands it to the authenticator (certificate.ts):
 * - `tls`: the local server's listener, with the peer certificate and whether TLS verified it
 *   against the configured client CA bundle (`socket.authorized`);
 * - `api-gateway`: the Lambda adapter, with API Gateway's `clientCert` (verified by API Gateway's
 *   truststore before the event existed).
 */
export type ClientCertificateInput =
  | {
      readonly source: 'tls';
      readonly certificate: X509Certificate | string | Buffer;
      readonly verified: boolean;
    }
  | { readonly source: 'api-gateway'; readonly clientCert: ApiGatewayClientCert };
