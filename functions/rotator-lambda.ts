import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { RotatorCallFailure, type RotatorInvoker } from '../lib/secrets/rotators/invoker.js';
import type { RotatorCall, RotatorInfo } from '../packages/client/src/contract.js';

/**
 * Calls an allow-listed Lambda rotator (docs/rotation.md, "External rotators"): a synchronous
 * `Invoke` with the step's JSON as its payload. The step is done when the function returns
 * normally (status 200, no `FunctionError`); an error it throws, a refusal by Lambda, or no answer
 * within the step's timeout fails the step. The answer's payload is never read into a log or an
 * error: the rotator may echo the grant or the value.
 */
export class LambdaRotatorInvoker implements RotatorInvoker {
  constructor(private readonly client: LambdaClient = new LambdaClient({ maxAttempts: 1 })) {}

  async invoke(rotator: RotatorInfo, call: RotatorCall, timeoutMs: number): Promise<void> {
    if (rotator.kind !== 'lambda') throw new RotatorCallFailure('refused');
    let out: { StatusCode?: number; FunctionError?: string };
    try {
      out = await this.client.send(
        new InvokeCommand({
          FunctionName: rotator.arn,
          InvocationType: 'RequestResponse',
          Payload: new TextEncoder().encode(JSON.stringify(call)),
        }),
        { abortSignal: AbortSignal.timeout(timeoutMs) },
      );
    } catch (err) {
      throw new RotatorCallFailure(failureOf(err));
    }
    if (out.FunctionError !== undefined) throw new RotatorCallFailure('function_error');
    if (out.StatusCode !== 200) throw new RotatorCallFailure('bad_status');
  }
}

/** A fixed reason for an SDK failure: its name only, never its message. */
function failureOf(err: unknown): 'timeout' | 'refused' | 'unreachable' {
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') return 'timeout';
  // Lambda answered and said no: no permission, no such function, a bad request.
  if (
    name === 'AccessDeniedException' ||
    name === 'ResourceNotFoundException' ||
    name === 'InvalidParameterValueException' ||
    name === 'InvalidRequestContentException'
  ) {
    return 'refused';
  }
  return 'unreachable';
}
