/**
 * One principal model for every way in. Cedar sees `Coffer::User::"<id>"` or
 * `Coffer::Role::"<id>"`, member of `Coffer::Group::"<g>"` for each group.
 */
export type PrincipalType = 'User' | 'Role';

/** How the caller proved who it is: `oidc` (an issuer's JWT), `iam` (SigV4 via API Gateway), `dev` (local dev issuer). */
export type AuthMethod = 'oidc' | 'iam' | 'dev';

export interface Principal {
  readonly type: PrincipalType;
  /** `<issuer alias>:<sub>` for OIDC and dev tokens; the IAM role or user ARN for IAM callers. */
  readonly id: string;
  /** Coffer groups, only ever from an issuer's group mapping (dev issuer: one to one). */
  readonly groups: readonly string[];
  /** String attributes from configured claims (OIDC) or the caller's account and session (IAM). */
  readonly attributes: Readonly<Record<string, string>>;
  readonly authMethod: AuthMethod;
  /** The issuer alias for OIDC and dev tokens. */
  readonly issuer?: string;
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
