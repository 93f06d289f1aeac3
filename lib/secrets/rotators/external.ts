import type { RotationResult, RotatorInfo, RotatorStep } from '../../../packages/client/src/contract.js';
import type { AuditContext } from '../../audit/trail.js';
import { RotationStepFailedError } from '../../errors.js';
import type { RotationState, SecretHead } from '../../store/records.js';
import { labelsOf } from '../stages.js';
import { RotationGrants } from './grants.js';
import { callRotator, RotatorCallFailure, type RotatorSettings } from './invoker.js';

/*
 * Rotation through an external rotator (docs/rotation.md, "External rotators"), in the steps of
 * AWS Secrets Manager's rotation functions with less power given away:
 *
 *   create (Coffer: the pending version, with the secret's own generator)
 *   → setSecret (rotator: put the pending value into the target)
 *   → testSecret (rotator: check the target works with it)
 *   → finish (Coffer: pending → current, current → previous, one head write)
 *
 * The step the pending version has reached is kept in the authenticated head (`rotation.progress`),
 * written after each step the rotator finished, so a failed or interrupted rotation resumes at the
 * step that did not finish and never makes another pending version.
 */

/** What the runner needs of the secret service: its own head writes, each audited. */
export interface RotationOps {
  createPending(audit: AuditContext, head: SecretHead): Promise<SecretHead>;
  finish(audit: AuditContext, head: SecretHead): Promise<RotationResult>;
  /** Writes `next` over `head` (conditional on `head`), with its audit record; the head written. */
  replace(audit: AuditContext, head: SecretHead, next: SecretHead): Promise<SecretHead>;
}

/** The step a pending version is at (the next to run), and whether that step failed last time. */
export function progressOf(head: SecretHead): { step: RotatorStep; failed: boolean } | undefined {
  const pending = labelsOf(head).pending;
  if (pending === undefined) return undefined;
  const progress = head.rotation?.progress;
  return progress?.version === pending
    ? { step: progress.step, failed: progress.failed === true }
    : { step: 'setSecret', failed: false };
}

/** The rotation policy without the state of a rotation under way. */
export function policyOf(rotation: RotationState): RotationState {
  const { progress: _p, lastError: _e, ...policy } = rotation;
  return policy;
}

export class ExternalRotation {
  constructor(
    private readonly settings: RotatorSettings,
    private readonly grants: RotationGrants,
    private readonly now: () => Date,
  ) {}

  /**
   * Runs the rotation of a head whose policy names a rotator, from wherever it stands. A step the
   * rotator fails throws RotationStepFailedError with `current` untouched; the caller records it.
   */
  async run(audit: AuditContext, start: SecretHead, ops: RotationOps): Promise<RotationResult> {
    const rotator = start.rotation?.rotator as RotatorInfo;
    let head = start;
    if (labelsOf(head).pending === undefined) head = await ops.createPending(audit, head);
    const pending = labelsOf(head).pending as number;
    const resumed = progressOf(head);
    let step = resumed?.step ?? 'setSecret';
    if (resumed?.failed) {
      // The failed mark comes off before the step runs again: a grant reads only a step under way.
      head = await ops.replace(audit, head, {
        ...head,
        rotation: { ...(head.rotation as RotationState), progress: { version: pending, step } },
        updatedAt: this.now().toISOString(),
      });
    }
    for (;;) {
      await this.step(rotator, step, head.path, pending);
      if (step === 'testSecret') return ops.finish(audit, head);
      step = 'testSecret';
      head = await ops.replace(audit, head, {
        ...head,
        rotation: { ...(head.rotation as RotationState), progress: { version: pending, step } },
        updatedAt: this.now().toISOString(),
      });
    }
  }

  /**
   * Puts the previous value back into the target before a revert moves `current` (`revertSecret`,
   * with a grant to read `previous`). A failure throws; nothing has moved.
   */
  async revert(head: SecretHead, previous: number): Promise<void> {
    const rotator = head.rotation?.rotator;
    if (!rotator) return;
    await this.step(rotator, 'revertSecret', head.path, previous);
  }

  private async step(rotator: RotatorInfo, step: RotatorStep, path: string, version: number): Promise<void> {
    const grant = this.grants.issue(path, version, step);
    try {
      await callRotator(this.settings, rotator, {
        step,
        path,
        pendingVersion: version,
        stage: RotationGrants.stageOf(step),
        grant,
      });
    } catch (err) {
      throw new RotationStepFailedError(
        step,
        version,
        err instanceof RotatorCallFailure ? err.reason : 'unreachable',
      );
    }
  }
}
