import type { RotatorCall, RotatorInfo } from '../../../packages/client/src/contract.js';
import { isLoopbackUrl, RotatorCallFailure, type RotatorInvoker } from './invoker.js';

/**
 * Calls a loopback webhook rotator: `POST` of the step's JSON (`{step, path, pendingVersion,
 * stage, grant}`); any 2xx is success. Redirects are not followed (a redirect could carry the
 * grant off the machine), the answer's body is never read into a log or an error, and the call is
 * cut at the step's timeout.
 */
export class WebhookInvoker implements RotatorInvoker {
  constructor(private readonly fetchImpl: typeof fetch = fetch) {}

  async invoke(rotator: RotatorInfo, call: RotatorCall, timeoutMs: number): Promise<void> {
    if (rotator.kind !== 'webhook' || !isLoopbackUrl(rotator.url)) throw new RotatorCallFailure('refused');
    let res: Response;
    try {
      res = await this.fetchImpl(rotator.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(call),
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const name = (err as { name?: unknown } | null)?.name;
      throw new RotatorCallFailure(
        name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'unreachable',
      );
    }
    // Drained unread: the rotator's answer may say anything, and nothing here repeats it.
    await res.body?.cancel().catch(() => undefined);
    if (res.status < 200 || res.status > 299) throw new RotatorCallFailure('bad_status');
  }
}
