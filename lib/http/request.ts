import type { Context } from 'hono';
import type { z } from 'zod';
import type { AuditContext } from '../audit/trail.js';
import type { ClientCertificateInput, IamCaller, Principal } from '../authn/principal.js';
import { CofferError, InvalidRequestError } from '../errors.js';

/* What every route module shares: the request's variables, strict JSON bodies, schema parsing. */

/** What the adapter (node server, Lambda) knows about the connection, never from headers. */
export interface ConnectionInfo {
  readonly sourceIp: string;
  /** Only the Lambda adapter sets this, from API Gateway's IAM authorizer context. */
  readonly iamCaller?: IamCaller;
  /**
   * The verified client certificate: the node server's TLS listener (peer certificate and
   * `socket.authorized`), or the Lambda adapter from API Gateway's mutual-TLS `clientCert` context
   * (`clientCertFromEvent`).
   */
  readonly clientCertificate?: ClientCertificateInput;
  /**
   * The connection came through the mutual-TLS API (Lambda adapter): the certificate is the only
   * credential there, and Authorization headers are not read.
   */
  readonly certificateOnly?: boolean;
  /**
   * The request path exactly as the client sent it, before URL parsing. The WHATWG URL parser
   * removes `.` and `..` segments (also `%2e` spellings) and turns `\` into `/`, so only the raw
   * path shows that a client asked for `a/../b` rather than `b`.
   */
  readonly rawPath?: string;
}

export type AppEnv = {
  Variables: {
    requestId: string;
    audit: AuditContext;
    principal: Principal;
    connection: ConnectionInfo;
    errorCode: string;
  };
};

class InvalidJsonError extends InvalidRequestError {
  static override readonly code = 'invalid_json';
}

export function parse<T>(schema: z.ZodType<T>, input: unknown, what: string): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  throw new InvalidRequestError(`invalid ${what}: ${where}${issue?.message ?? 'malformed'}`);
}

/** The connection failed while the body was being read: the client hung up or reset it. */
class ClientClosedRequestError extends CofferError {
  static override readonly code = 'client_closed_request';
}

class UnsupportedMediaTypeError extends CofferError {
  static override readonly code = 'unsupported_media_type';
}

/** Bodies are decoded strictly: an invalid byte must fail, not become U+FFFD in a stored value. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The request body as JSON. A body must be `application/json` (a `charset` parameter, if any, must
 * be UTF-8); no content type at all is taken as JSON, for hand-written clients.
 */
export async function jsonBody(c: Context): Promise<unknown> {
  const type = c.req.header('content-type');
  if (type !== undefined) {
    const [media = '', ...params] = type.split(';').map((p) => p.trim().toLowerCase());
    const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length);
    if (media !== 'application/json' || (charset !== undefined && !/^"?utf-?8"?$/.test(charset))) {
      throw new UnsupportedMediaTypeError('request bodies must be application/json in UTF-8');
    }
  }
  let bytes: ArrayBuffer;
  try {
    bytes = await c.req.arrayBuffer();
  } catch (err) {
    // Our own refusals (the body limit) stand; any other failure to read the body is the
    // connection's: the client went away mid-body, which is no server error.
    if (err instanceof CofferError) throw err;
    throw new ClientClosedRequestError('the client closed the connection before its request body arrived');
  }
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new InvalidJsonError('request body is not valid UTF-8');
  }
  if (text.trim() === '') throw new InvalidJsonError('request body is empty; expected JSON');
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidJsonError('request body is not valid JSON');
  }
}
