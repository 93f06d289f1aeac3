import {
  type CompiledSet,
  compiledForm,
  compilePolicySet,
  compileSealedPolicySet,
  type LoadOptions,
  type PolicySet,
  policySetHash,
  readPolicyDir,
  schemaHash,
  setFromCompiled,
  validatorFingerprint,
} from '../authz/policy-set.js';
import { canonicalJson } from '../crypto/canonical.js';
import { IntegrityError, ThrottledError } from '../errors.js';
import { describeError, type Logger } from '../log.js';
import { ControlRecordConflict, type ControlRecords } from '../store/control-records.js';
import { StorageUnavailableError } from '../store/storage-errors.js';

/*
 * The bundled policy set's seal: validating a set against the schema (Cedar's validator and the
 * schema probe) is most of a Lambda cold start, and a deployed bundle's set never changes. So the
 * first start that validates a set records that it did, in an authenticated control record
 *
 *   policy-seal/bundled = { setHash, schemaHash, compiled }
 *
 * MAC'd with the storage key (lib/store/control-records.ts; in AWS a key derived with KMS
 * GenerateMac, never stored), and every later start whose files hash to `setHash` under a schema
 * hashing to `schemaHash` takes the parsed form (`compiled`: each policy's Cedar JSON and the
 * schema's actions) from the seal instead of validating, or even parsing, them. A writer of the secrets
 * table cannot make a seal (no key), nor edit one (its MAC fails: the start is refused, fail
 * closed), nor name another schema for a set (refused too). A seal for other files, or made by
 * another version of the validator (`validator`: the engine's version and what Coffer sends it),
 * is simply not this set's: it is validated in full, and sealed when it passes. One record, so the last set
 * validated wins; two versions deployed side by side validate in turn, which is only slower.
 */

export const POLICY_SEAL_KIND = 'policy-seal';
export const POLICY_SEAL_ID = 'bundled';

/** What a seal says: `compilePolicySet` accepted the set of this hash under the schema of this hash. */
export interface PolicySeal {
  readonly setHash: string;
  readonly schemaHash: string;
  /** validatorFingerprint() of the code that validated it: another code's seal is not trusted. */
  readonly validator?: string;
  /**
   * The set as that validation parsed it, so that a sealed start needs no parser call at all.
   * Absent when it would make the record too large: the sealed start then parses the files.
   */
  readonly compiled?: CompiledSet;
}

/** A compiled form larger than this is not stored (DynamoDB items are at most 400 KB). */
const MAX_COMPILED_BYTES = 200_000;

const HEX64 = /^[0-9a-f]{64}$/;

function checkSeal(payload: unknown): PolicySeal {
  const p = payload as Partial<PolicySeal> | null;
  if (!p || typeof p.setHash !== 'string' || typeof p.schemaHash !== 'string') throw new IntegrityError();
  if (!HEX64.test(p.setHash) || !HEX64.test(p.schemaHash)) throw new IntegrityError();
  if (p.validator !== undefined && typeof p.validator !== 'string') throw new IntegrityError();
  const c = p.compiled as Partial<CompiledSet> | undefined;
  if (c !== undefined && (!Array.isArray(c.actions) || !Array.isArray(c.policies)))
    throw new IntegrityError();
  return p as PolicySeal;
}

export interface SealedLoad {
  readonly set: PolicySet;
  /** `sealed`: the seal verified and validation was skipped; `validated`: validated in full. */
  readonly via: 'sealed' | 'validated';
}

/**
 * Loads a policy directory, skipping validation when a verified seal names exactly these files
 * and this schema. Rejects with IntegrityError when the seal fails its MAC or binds this set to
 * another schema, with PolicySetError when the set is invalid. Storage trouble while reading the
 * seal is not a reason to refuse a set that validates: it is then validated in full.
 *
 * @example
 * const { set } = await loadSealedPolicyDir(bundleDir, control, logger);
 */
export async function loadSealedPolicyDir(
  dir: string,
  control: ControlRecords,
  logger: Logger,
  options: LoadOptions = {},
): Promise<SealedLoad> {
  const [{ schema, files }, record] = await Promise.all([
    readPolicyDir(dir, options),
    control.get<unknown>(POLICY_SEAL_KIND, POLICY_SEAL_ID).catch((err: unknown) => {
      if (err instanceof StorageUnavailableError || err instanceof ThrottledError) {
        logger.warn('policy seal not read: storage unavailable; validating the set', describeError(err));
        return 'unreadable' as const;
      }
      throw err;
    }),
  ]);
  const setHash = policySetHash(schema, files);
  const schemaH = schemaHash(schema);
  const seal = record && record !== 'unreadable' ? checkSeal(record.payload) : undefined;
  // A seal made by another validator (an older Coffer) says nothing about this one: validate again.
  if (seal?.setHash === setHash && seal.validator === validatorFingerprint()) {
    if (seal.schemaHash !== schemaH) throw new IntegrityError();
    const compiled = seal.compiled ? setFromCompiled(schema, files, seal.compiled) : undefined;
    return { set: compiled ?? compileSealedPolicySet(schema, files), via: 'sealed' };
  }
  const set = compilePolicySet(schema, files);
  if (record !== 'unreadable') {
    const compiled = compiledForm(set);
    const small = canonicalJson(compiled).length <= MAX_COMPILED_BYTES;
    try {
      await control.put<PolicySeal>(
        POLICY_SEAL_KIND,
        POLICY_SEAL_ID,
        { setHash, schemaHash: schemaH, validator: validatorFingerprint(), ...(small ? { compiled } : {}) },
        record?.generation ?? 0,
      );
    } catch (err) {
      // Another start sealed first, or storage is down: this start has its validated set anyway.
      if (!(err instanceof ControlRecordConflict)) {
        logger.warn('policy seal not written', describeError(err));
      }
    }
  }
  return { set, via: 'validated' };
}
