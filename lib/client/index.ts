import { CofferClientError } from './errors.js';

export { CofferClientError } from './errors.js';

export type ClientAuth =
  | { readonly token: string; readonly tokenProvider?: never }
  | { readonly tokenProvider: () => Promise<string> | string; readonly token?: never };

export interface ClientOptions {
  /** The server, e.g. `http://127.0.0.1:8270` or the API's URL. */
  readonly endpoint: string;
  readonly auth: ClientAuth;
  /** Replaces the global fetch (tests, proxies). */
  readonly fetch?: typeof fetch;
  readonly userAgent?: string;
}

export interface SecretValue {
  path: string;
  version: number;
  value: string;
  createdAt: string;
}

export interface PutOptions {
  cas?: number;
  description?: string;
  tags?: Record<string, string>;
  idempotencyKey?: string;
}

export interface PutResult {
  path: string;
  version: number;
  createdAt: string;
}

export interface ListItem {
  path: string;
  version: number;
  updatedAt: string;
}

export interface ListPage {
  items: ListItem[];
  folders?: string[];
  cursor?: string;
}

export interface VersionInfo {
  version: number;
  createdAt: string;
  createdBy?: string;
  destroyed: boolean;
  keyId?: string;
}

export interface SecretMetadata {
  path: string;
  currentVersion: number;
  createdAt: string;
  updatedAt: string;
  description?: string;
  tags: Record<string, string>;
  maxVersions: number;
  owner?: string;
  deletedAt?: string;
  purgeAt?: string;
  versions: VersionInfo[];
}

export interface WhoAmI {
  type: string;
  id: string;
  entity: string;
  groups: string[];
  attributes: Record<string, string>;
  authMethod: string;
  issuer?: string;
}

const encodePath = (path: string) => path.split('/').map(encodeURIComponent).join('/');

/** A small HTTP client for the Coffer API v1. */
export class CofferClient {
  private readonly endpoint: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: ClientOptions) {
    this.endpoint = options.endpoint.replace(/\/+$/, '');
    this.fetchImpl = options.fetch ?? fetch;
  }

  async request<T>(
    method: string,
    route: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const auth = this.options.auth;
    const token = auth.token ?? (await auth.tokenProvider?.());
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.endpoint}${route}`, {
        method,
        headers: {
          accept: 'application/json',
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          'user-agent': this.options.userAgent ?? 'coffer-client/0.1',
          ...headers,
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch {
      throw new CofferClientError('unreachable', 0, `cannot reach the Coffer server at ${this.endpoint}`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new CofferClientError(
        'bad_response',
        response.status,
        `unexpected response (HTTP ${response.status})`,
      );
    }
    if (!response.ok) {
      const err = (parsed as { error?: { code?: string; message?: string; requestId?: string } }).error;
      throw new CofferClientError(
        err?.code ?? 'http_error',
        response.status,
        err?.message ?? `HTTP ${response.status}`,
        err?.requestId,
      );
    }
    return parsed as T;
  }

  health(): Promise<{ status: string }> {
    return this.request('GET', '/v1/health');
  }

  whoami(): Promise<WhoAmI> {
    return this.request('GET', '/v1/whoami');
  }

  get(path: string, options: { version?: number } = {}): Promise<SecretValue> {
    const q = options.version !== undefined ? `?version=${options.version}` : '';
    return this.request('GET', `/v1/secrets/${encodePath(path)}${q}`);
  }

  put(path: string, value: string, options: PutOptions = {}): Promise<PutResult> {
    const { idempotencyKey, ...rest } = options;
    return this.request(
      'PUT',
      `/v1/secrets/${encodePath(path)}`,
      { value, ...rest },
      idempotencyKey ? { 'idempotency-key': idempotencyKey } : {},
    );
  }

  delete(
    path: string,
    options: { recoveryDays?: number } = {},
  ): Promise<{ path: string; deletedAt: string; purgeAt: string }> {
    const q = options.recoveryDays !== undefined ? `?recoveryDays=${options.recoveryDays}` : '';
    return this.request('DELETE', `/v1/secrets/${encodePath(path)}${q}`);
  }

  restore(path: string): Promise<{ path: string; version: number }> {
    return this.request('POST', `/v1/restore/${encodePath(path)}`);
  }

  destroy(path: string, versions: number[]): Promise<{ path: string; destroyed: number[] }> {
    return this.request('POST', `/v1/destroy/${encodePath(path)}`, { versions });
  }

  history(path: string): Promise<SecretMetadata> {
    return this.request('GET', `/v1/meta/${encodePath(path)}`);
  }

  patchMetadata(
    path: string,
    patch: { description?: string; tags?: Record<string, string>; maxVersions?: number },
  ): Promise<SecretMetadata> {
    return this.request('PATCH', `/v1/meta/${encodePath(path)}`, patch);
  }

  listPage(
    prefix: string,
    options: { delimiter?: '/'; limit?: number; cursor?: string } = {},
  ): Promise<ListPage> {
    const q = new URLSearchParams({ prefix });
    if (options.delimiter) q.set('delimiter', options.delimiter);
    if (options.limit) q.set('limit', String(options.limit));
    if (options.cursor) q.set('cursor', options.cursor);
    return this.request('GET', `/v1/list?${q}`);
  }

  /** Every page of a listing, following cursors. */
  async *list(prefix: string, options: { delimiter?: '/'; limit?: number } = {}): AsyncGenerator<ListPage> {
    let cursor: string | undefined;
    do {
      const page = await this.listPage(prefix, { ...options, ...(cursor ? { cursor } : {}) });
      yield page;
      cursor = page.cursor;
    } while (cursor);
  }
}

export function createClient(options: ClientOptions): CofferClient {
  return new CofferClient(options);
}
