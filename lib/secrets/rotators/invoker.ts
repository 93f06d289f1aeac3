import type { RotatorCall, RotatorInfo } from '../../../packages/client/src/contract.js';
import { type RotatorFailure, RotatorNotAllowedError } from '../../errors.js';

/**
 * Calls an external rotator for one step. Resolves when the rotator says the step is done;
 * rejects with a RotatorCallFailure (a fixed reason, never the rotator's answer) when it failed,
 * refused or did not answer within `timeoutMs`.
 */
export interface RotatorInvoker {
  invoke(rotator: RotatorInfo, call: RotatorCall, timeoutMs: number): Promise<void>;
}

/** A failed rotator call, by fixed reason. */
export class RotatorCallFailure extends Error {
  constructor(readonly reason: RotatorFailure) {
    super(`rotator call failed: ${reason}`);
    this.name = 'RotatorCallFailure';
  }
}

/** Each step's call is cut after this: two steps stay well inside API Gateway's 30 s. */
export const ROTATOR_STEP_TIMEOUT_MS = 10_000;

/**
 * Which rotators an installation calls. The local server calls loopback webhooks; an AWS
 * installation calls the Lambda functions on its allow-list (CDK context `rotatorLambdaArns`),
 * once it has a Lambda invoker. Default: none, so naming a rotator is refused.
 */
export interface RotatorSettings {
  /** Loopback webhooks (`http://127.0.0.1:PORT/...`), and their invoker. */
  readonly webhooks?: RotatorInvoker;
  /** Lambda rotators: the allow-list, and the invoker (absent: no Lambda rotator is called). */
  readonly lambda?: { readonly allowedArns: readonly string[]; readonly invoker?: RotatorInvoker };
  /** Per-step timeout. Default ROTATOR_STEP_TIMEOUT_MS. */
  readonly stepTimeoutMs?: number;
}

const LAMBDA_ARN =
  /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9$_-]{1,128})?$/;

/**
 * Whether a URL is a plain http(s) URL to this machine's loopback: `127.0.0.0/8`, `[::1]` or
 * `localhost`, with no credentials in it. Anything else could hand a grant to another machine.
 */
export function isLoopbackUrl(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  if (url.username !== '' || url.password !== '') return false;
  const host = url.hostname;
  if (host === 'localhost' || host === '[::1]') return true;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return v4 !== null && Number(v4[1]) === 127 && v4.slice(2).every((o) => Number(o) <= 255);
}

/** The rotator a policy request names, checked against what this installation calls. */
export function checkRotator(
  request: { readonly webhook?: string; readonly lambdaArn?: string },
  settings: RotatorSettings,
): RotatorInfo | undefined {
  if (request.webhook !== undefined && request.lambdaArn !== undefined) {
    throw new RotatorNotAllowedError('name one rotator: a webhook or a Lambda function');
  }
  if (request.webhook !== undefined) {
    if (!settings.webhooks) throw new RotatorNotAllowedError('this installation calls no webhook rotators');
    if (!isLoopbackUrl(request.webhook)) {
      throw new RotatorNotAllowedError(
        'a webhook rotator must be an http(s) URL on loopback (127.0.0.1, [::1], localhost)',
      );
    }
    return { kind: 'webhook', url: new URL(request.webhook).toString() };
  }
  if (request.lambdaArn !== undefined) {
    const lambda = settings.lambda;
    if (!LAMBDA_ARN.test(request.lambdaArn) || !lambda?.allowedArns.includes(request.lambdaArn)) {
      throw new RotatorNotAllowedError(
        "the Lambda function is not on this installation's rotator allow-list",
      );
    }
    if (!lambda.invoker) throw new RotatorNotAllowedError('this installation cannot invoke Lambda rotators');
    return { kind: 'lambda', arn: request.lambdaArn };
  }
  return undefined;
}

/**
 * Calls a stored rotator through the invoker for its kind, checking it against the settings again:
 * a rotator that is no longer allowed (allow-list shrunk, webhook on a server that calls none) is
 * not called, and the step fails as `refused`.
 */
export async function callRotator(
  settings: RotatorSettings,
  rotator: RotatorInfo,
  call: RotatorCall,
): Promise<void> {
  const timeout = settings.stepTimeoutMs ?? ROTATOR_STEP_TIMEOUT_MS;
  if (rotator.kind === 'webhook') {
    if (!settings.webhooks || !isLoopbackUrl(rotator.url)) throw new RotatorCallFailure('refused');
    return settings.webhooks.invoke(rotator, call, timeout);
  }
  const lambda = settings.lambda;
  if (!lambda?.allowedArns.includes(rotator.arn)) throw new RotatorCallFailure('refused');
  if (!lambda.invoker) throw new RotatorCallFailure('unavailable');
  return lambda.invoker.invoke(rotator, call, timeout);
}
