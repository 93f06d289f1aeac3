import type { SecretHead } from '../store/records.js';
import type { SecretsStore } from '../store/secrets-store.js';

/** What the purger needs of the store: the deletion index and the purge of one secret. */
export type PurgeStore = Pick<SecretsStore, 'expiredDeletions' | 'purge'>;

export interface PurgerOptions {
  readonly store: PurgeStore;
  /** The clock the recovery window is measured with. Default: the system clock. */
  readonly now?: () => Date;
}

/**
 * Removes soft-deleted secrets once their recovery window has ended, and says when a window has
 * ended. It works on the store alone: a purge serves no caller, so it authorizes nothing, writes no
 * request record and never unwraps a key (the scheduled job needs no authorizer, audit trail or key
 * provider). The secret service asks the same purger whether a deleted secret is past its window,
 * so that reads and the purge agree on the moment a secret is gone.
 *
 * @example
 * const purger = new Purger({ store: new SecretsStore(client, tables.secrets) });
 * const purged = await purger.purgeExpired();
 */
export class Purger {
  private readonly store: PurgeStore;
  private readonly now: () => Date;

  constructor(options: PurgerOptions) {
    this.store = options.store;
    this.now = options.now ?? (() => new Date());
  }

  /**
   * Whether a soft-deleted secret's recovery window has ended. Reads use this, not the purge's
   * progress: a secret past its window is gone whether or not the purge has run.
   */
  isExpired(head: SecretHead): boolean {
    return head.purgeAt !== undefined && head.purgeAt <= this.now().toISOString();
  }

  /**
   * Purges one secret if it is soft-deleted and past its window. Returns whether it was past its
   * window (it is then gone, purged by this call or by someone else meanwhile).
   */
  async purgeIfExpired(head: SecretHead): Promise<boolean> {
    if (!head.deletedAt || head.purgeAt === undefined || !this.isExpired(head)) return false;
    await this.store.purge(head.path, head.purgeAt);
    return true;
  }

  /**
   * Removes every soft-deleted secret whose recovery window has ended, page by page of the
   * deletion index, until none is due. Returns how many this call removed (an entry purged by
   * someone else meanwhile, or restored, is not counted).
   */
  async purgeExpired(): Promise<number> {
    let purged = 0;
    for (;;) {
      const due = await this.store.expiredDeletions(this.now().toISOString());
      if (due.length === 0) return purged;
      for (const { path, purgeAt } of due) {
        if (await this.store.purge(path, purgeAt)) purged++;
      }
    }
  }
}
