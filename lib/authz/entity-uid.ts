/**
 * Entity references, shared by the entity builder (entities.ts) and the policy slicer
 * (slicing.ts). They live apart from both so that neither imports the other for them.
 */

/** An entity reference as Cedar's JSON format writes it. */
export interface Uid {
  readonly type: string;
  readonly id: string;
}

/** A stable string for an entity reference, as Cedar prints it: `Coffer::Group::"admins"`. */
export const uidKey = (uid: Uid): string => `${uid.type}::${JSON.stringify(uid.id)}`;
