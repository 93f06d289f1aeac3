import type { Problem, ReportProblem } from './verify-problems.js';

/*
 * The audit table against the CloudWatch Logs copy of its records (`verify --against-logs`).
 *
 * Records removed from the end of a chain before the next checkpoint leave a table that still
 * verifies on its own: nothing after them links to them, and the next checkpoint signs the
 * shortened chain. The same process that wrote each record printed it to stdout once it was
 * durable, and that copy lives in another service (CloudWatch Logs) than the table: a table
 * writer cannot take lines back out of it. So every line of the copy must still be in the table,
 * with the same hash.
 */

/** A record as the comparison sees it: where it is (chain, sequence number) and its hash. */
export interface RecordRef {
  readonly chain: string;
  readonly seq: number;
  readonly hash: string;
  readonly requestId?: string;
}

export interface LogsComparison {
  /** Record lines read from the logs (request and chain-start lines). */
  readonly logRecords: number;
  /** Table records that had a line in the logs. */
  readonly matched: number;
  /**
   * Table records with no line in the logs: delivery lag (a line reaches CloudWatch Logs some
   * seconds after its record is durable), or older than the log group's retention. Not a failure:
   * the copy can only prove what it holds.
   */
  readonly notInLogs: number;
  /** Log lines that are not an audit record line (other output of the function, unreadable JSON). */
  readonly ignoredLines: number;
}

/**
 * The filter CloudWatch Logs applies before it returns events: only the copy's record lines (the
 * function's operational log and checkpoint lines stay on AWS's side of the wire).
 */
export const AUDIT_RECORD_FILTER_PATTERN =
  '{ $.audit = "coffer.v1" && ($.type = "request" || $.type = "chain-start") }';

const key = (chain: string, seq: number) => `${chain}\u0000${seq}`;

/**
 * One audit record line of the stdout copy (`logLine` in record.ts), as CloudWatch Logs returns
 * the event's message; undefined for anything else (checkpoint lines carry no chain position,
 * other output of the function is not ours). The Lambda runtime may put a text prefix before a
 * line printed with console.log; the copy is written with process.stdout.write and has none, but
 * a line is still found after such a prefix so that a change of logging setup does not blind the
 * comparison.
 */
export function parseLogLine(message: string): RecordRef | undefined {
  const at = message.indexOf('{');
  if (at < 0) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(message.slice(at));
  } catch {
    return undefined;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const line = value as Record<string, unknown>;
  if (line.audit !== 'coffer.v1' || (line.type !== 'request' && line.type !== 'chain-start'))
    return undefined;
  const { chain, seq, hash, requestId } = line;
  if (typeof chain !== 'string' || typeof hash !== 'string') return undefined;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return undefined;
  return { chain, seq, hash, ...(typeof requestId === 'string' ? { requestId } : {}) };
}

/**
 * Compares the records of the table with the lines of the logs. Feed every log line first, then
 * every table record, then call `finish`. The order matters: the logs must be read before the
 * table, so that a record written in between is in the table only (counted as lag) and never in
 * the logs only (which would be reported as deleted).
 */
export class LogsComparer {
  /** chain+seq → the hashes the logs hold for it (one, unless the copy itself disagrees). */
  private readonly logged = new Map<string, { ref: RecordRef; hashes: Set<string> }>();
  private logRecords = 0;
  private ignoredLines = 0;
  private matched = 0;
  private notInLogs = 0;

  constructor(private readonly report: ReportProblem) {}

  addLogMessage(message: string): void {
    const ref = parseLogLine(message);
    if (!ref) {
      this.ignoredLines++;
      return;
    }
    this.addLogged(ref);
  }

  addLogged(ref: RecordRef): void {
    this.logRecords++;
    const k = key(ref.chain, ref.seq);
    const seen = this.logged.get(k);
    if (seen) seen.hashes.add(ref.hash);
    else this.logged.set(k, { ref, hashes: new Set([ref.hash]) });
  }

  addStored(ref: RecordRef): void {
    const k = key(ref.chain, ref.seq);
    const seen = this.logged.get(k);
    if (!seen) {
      this.notInLogs++;
      return;
    }
    this.logged.delete(k);
    this.matched++;
    for (const hash of seen.hashes) {
      if (hash === ref.hash) continue;
      this.report({
        kind: 'differs_from_logs',
        chain: ref.chain,
        seq: ref.seq,
        ...(seen.ref.requestId !== undefined ? { requestId: seen.ref.requestId } : {}),
        message: `record ${ref.seq} of chain ${ref.chain} has another hash in the table (${short(ref.hash)}) than in the CloudWatch Logs copy (${short(hash)}): it was replaced`,
      });
    }
  }

  /** Reports every logged record the table did not hold, in chain and sequence order. */
  finish(): LogsComparison {
    const missing = [...this.logged.values()].sort((a, b) =>
      a.ref.chain < b.ref.chain ? -1 : a.ref.chain > b.ref.chain ? 1 : a.ref.seq - b.ref.seq,
    );
    for (const { ref } of missing) {
      const problem: Problem = {
        kind: 'missing_from_table',
        chain: ref.chain,
        seq: ref.seq,
        ...(ref.requestId !== undefined ? { requestId: ref.requestId } : {}),
        message: `record ${ref.seq} of chain ${ref.chain} is in the CloudWatch Logs copy but not in the table: it was deleted from the table`,
      };
      this.report(problem);
    }
    this.logged.clear();
    return {
      logRecords: this.logRecords,
      matched: this.matched,
      notInLogs: this.notInLogs,
      ignoredLines: this.ignoredLines,
    };
  }
}

const short = (hash: string) => (hash.length > 16 ? `${hash.slice(0, 16)}…` : hash);

/**
 * The whole comparison over two streams: the logs' messages (read first, see LogsComparer) and
 * the table's records.
 */
export async function compareWithLogs(
  logMessages: AsyncIterable<string> | Iterable<string>,
  stored: AsyncIterable<RecordRef> | Iterable<RecordRef>,
  report: ReportProblem,
): Promise<LogsComparison> {
  const comparer = new LogsComparer(report);
  for await (const message of logMessages) comparer.addLogMessage(message);
  for await (const ref of stored) comparer.addStored(ref);
  return comparer.finish();
}
