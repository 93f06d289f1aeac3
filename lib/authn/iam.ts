import { AuthRefusal } from './bearer.js';
import type { IamCaller, Principal } from './principal.js';

/** The route prefix on which API Gateway's IAM authorizer runs; the only place IAM callers exist. */
export const IAM_PREFIX = '/iam/v1';

export function isIamPath(path: string): boolean {
  return path === IAM_PREFIX || path.startsWith(`${IAM_PREFIX}/`);
}

/**
 * The parts of an API Gateway HTTP API (payload 2.0) event that carry the IAM authorizer's
 * identity. Typed structurally so that lib/ needs no aws-lambda types.
 */
export interface HttpApiV2EventLike {
  readonly requestContext?: {
    readonly authorizer?: {
      readonly iam?: {
        readonly userArn?: unknown;
        readonly accountId?: unknown;
        readonly callerId?: unknown;
        readonly principalOrgId?: unknown;
      } | null;
    } | null;
  } | null;
}

const str = (v: unknown, max = 2048): string | undefined =>
  typeof v === 'string' && v.length > 0 && v.length <= max ? v : undefined;

/**
 * The IAM caller that API Gateway's IAM authorizer put in the request context
 * (`requestContext.authorizer.iam`), or undefined. Only the request context is read: headers of the
 * event (which the caller controls) never name an identity.
 *
 * @example
 * const caller = iamCallerFromEvent(event); // in functions/api.ts, passed on as ConnectionInfo.iamCaller
 */
export function iamCallerFromEvent(event: HttpApiV2EventLike | null | undefined): IamCaller | undefined {
  const iam = event?.requestContext?.authorizer?.iam;
  if (typeof iam !== 'object' || iam === null) return undefined;
  const userArn = str(iam.userArn);
  if (!userArn) return undefined;
  const accountId = str(iam.accountId, 12);
  const callerId = str(iam.callerId, 256);
  const principalOrgId = str(iam.principalOrgId, 64);
  return {
    userArn,
    ...(accountId ? { accountId } : {}),
    ...(callerId ? { callerId } : {}),
    ...(principalOrgId ? { principalOrgId } : {}),
  };
}

// IAM name rules: user and role names are [\w+=,.@-], 1-64 characters; session names 2-64.
const NAME = '[\\w+=,.@-]{1,64}';
const SESSION = '[\\w+=,.@-]{2,64}';
// An IAM path is segments of printable ASCII between slashes; the ARN puts it before the name.
const PATH = '(?:/[\\x21-\\x2e\\x30-\\x7e]{1,128}){0,16}';
const USER_ARN = new RegExp(`^arn:(aws[a-z-]{0,16}):iam::(\\d{12}):user${PATH}/(${NAME})$`);
const ROLE_ARN = new RegExp(`^arn:(aws[a-z-]{0,16}):iam::(\\d{12}):role${PATH}/(${NAME})$`);
const ASSUMED_ROLE_ARN = new RegExp(
  `^arn:(aws[a-z-]{0,16}):sts::(\\d{12}):assumed-role/(${NAME})/(${SESSION})$`,
);

interface ParsedArn {
  readonly type: 'User' | 'Role';
  readonly partition: string;
  readonly account: string;
  readonly name: string;
  readonly sessionName?: string;
}

function parseCallerArn(arn: string): ParsedArn | undefined {
  const user = USER_ARN.exec(arn);
  if (user)
    return {
      type: 'User',
      partition: user[1] as string,
      account: user[2] as string,
      name: user[3] as string,
    };
  const role = ROLE_ARN.exec(arn);
  if (role)
    return {
      type: 'Role',
      partition: role[1] as string,
      account: role[2] as string,
      name: role[3] as string,
    };
  const assumed = ASSUMED_ROLE_ARN.exec(arn);
  if (assumed) {
    return {
      type: 'Role',
      partition: assumed[1] as string,
      account: assumed[2] as string,
      name: assumed[3] as string,
      sessionName: assumed[4] as string,
    };
  }
  return undefined;
}

/**
 * Maps an IAM caller to a Coffer principal:
 * - `arn:aws:iam::A:user[/path]/N` -> `User::"arn:aws:iam::A:user/N"` (the path is dropped: a user
 *   name is unique in its account whatever the path, and policies then need not know paths);
 * - `arn:aws:iam::A:role[/path]/N` and `arn:aws:sts::A:assumed-role/N/S` ->
 *   `Role::"arn:aws:iam::A:role/N"` (assumed-role ARNs carry no path, so role ids never have one),
 *   with the session name as an attribute;
 * - anything else (root, federated users, malformed ARNs) is refused.
 * The account stays in the id, so same-named roles of two accounts are two principals.
 */
export function principalFromIamCaller(caller: IamCaller): Principal {
  const parsed = parseCallerArn(caller.userArn);
  if (!parsed) throw new AuthRefusal('unmapped_arn');
  const { type, partition, account, name, sessionName } = parsed;
  // The authorizer reports the account separately; if both are present they must agree.
  if (caller.accountId !== undefined && caller.accountId !== account) {
    throw new AuthRefusal('account_mismatch');
  }
  const kind = type === 'User' ? 'user' : 'role';
  return {
    type,
    id: `arn:${partition}:iam::${account}:${kind}/${name}`,
    groups: [],
    attributes: {
      account,
      ...(sessionName !== undefined ? { sessionName } : {}),
      ...(caller.principalOrgId !== undefined ? { orgId: caller.principalOrgId } : {}),
    },
    authMethod: 'iam',
  };
}
