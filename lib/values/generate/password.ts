import {
  PASSWORD_CLASS_NAMES,
  PASSWORD_LENGTH,
  type PasswordClass,
} from '../../../packages/client/src/contract.js';
import { InvalidRequestError } from '../../errors.js';
import { cryptoRandom, pooled, type RandomSource, uniformIndex } from './random.js';

/** The character classes a password draws from (printable ASCII, no space). */
export const PASSWORD_CLASSES: Readonly<Record<PasswordClass, string>> = {
  lower: 'abcdefghijklmnopqrstuvwxyz',
  upper: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
  digits: '0123456789',
  symbols: '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~',
};

export { PASSWORD_CLASS_NAMES, PASSWORD_LENGTH, type PasswordClass };

/** A password policy as a caller gives it; every field has a default. */
export interface PasswordPolicy {
  readonly length?: number;
  /** Classes to draw from; each one appears at least once. Default: all four. */
  readonly classes?: readonly PasswordClass[];
  /** Characters never used (look-alikes such as `O0Il1`, or what a target system refuses). */
  readonly exclude?: string;
}

/** A policy with its defaults filled in: what is kept in metadata to generate again later. */
export interface ResolvedPasswordPolicy {
  readonly length: number;
  readonly classes: PasswordClass[];
  readonly exclude: string;
}

/**
 * Whole-password redraws before a policy is declared unsatisfiable. A policy within the limits
 * (length >= 8 >= 4 classes) needs a few draws on average; the bound only stops a pathological one.
 */
const MAX_DRAWS = 10_000;

/** Fills in defaults and checks the policy; a policy that cannot be met is 400 `invalid_request`. */
export function resolvePasswordPolicy(policy: PasswordPolicy = {}): ResolvedPasswordPolicy {
  const length = policy.length ?? PASSWORD_LENGTH.default;
  if (!Number.isInteger(length) || length < PASSWORD_LENGTH.min || length > PASSWORD_LENGTH.max) {
    throw new InvalidRequestError(
      `password length must be from ${PASSWORD_LENGTH.min} to ${PASSWORD_LENGTH.max}`,
    );
  }
  const classes = [...new Set(policy.classes ?? PASSWORD_CLASS_NAMES)];
  if (classes.length === 0) throw new InvalidRequestError('a password needs at least one character class');
  for (const c of classes) {
    if (!Object.hasOwn(PASSWORD_CLASSES, c)) throw new InvalidRequestError(`unknown character class "${c}"`);
  }
  const exclude = [...new Set(policy.exclude ?? '')].sort().join('');
  for (const c of classes) {
    if ([...PASSWORD_CLASSES[c]].every((ch) => exclude.includes(ch))) {
      throw new InvalidRequestError(`the exclusions leave no character of class "${c}"`);
    }
  }
  // Canonical order, so that the same policy is stored (and compared) the same way.
  return { length, classes: PASSWORD_CLASS_NAMES.filter((c) => classes.includes(c)), exclude };
}

/** The characters a resolved policy draws from, and the class of each. */
export function passwordAlphabet(policy: ResolvedPasswordPolicy): {
  chars: string[];
  classOf: PasswordClass[];
} {
  const chars: string[] = [];
  const classOf: PasswordClass[] = [];
  for (const c of policy.classes) {
    for (const ch of PASSWORD_CLASSES[c]) {
      if (policy.exclude.includes(ch)) continue;
      chars.push(ch);
      classOf.push(c);
    }
  }
  return { chars, classOf };
}

/**
 * A password drawn uniformly from all the passwords the policy allows: each character uniformly
 * from the alphabet (rejection sampling, no modulo bias), and a password missing one of its
 * classes thrown away whole and drawn again. Patching a missing class in at a random position
 * instead would make passwords with exactly one character of a class more likely than they are.
 *
 * @example generatePassword({ length: 24, classes: ['lower', 'digits'], exclude: 'l1' })
 */
export function generatePassword(policy: PasswordPolicy = {}, random: RandomSource = cryptoRandom): string {
  const resolved = resolvePasswordPolicy(policy);
  const { chars, classOf } = passwordAlphabet(resolved);
  const bytes = pooled(random);
  for (let draw = 0; draw < MAX_DRAWS; draw++) {
    const seen = new Set<PasswordClass>();
    let out = '';
    for (let i = 0; i < resolved.length; i++) {
      const at = uniformIndex(chars.length, bytes);
      out += chars[at];
      seen.add(classOf[at] as PasswordClass);
    }
    if (seen.size === resolved.classes.length) return out;
  }
  throw new InvalidRequestError('the password policy is too strict to be met; allow more characters');
}
