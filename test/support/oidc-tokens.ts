import {
  createHmac,
  createPublicKey,
  type JsonWebKey as NodeJsonWebKey,
  randomBytes,
  randomUUID,
} from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  base64url,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  SignJWT,
} from 'jose';

const b64json = (value: unknown) => base64url.encode(JSON.stringify(value));

/** An HTTP server on 127.0.0.1 that counts every request it gets. */
export interface CountingServer {
  readonly url: string;
  readonly requests: string[];
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A signing key with its public JWK. */
export interface TestKey {
  readonly kid: string;
  readonly alg: string;
  readonly privateJwk: JWK;
  readonly publicJwk: JWK;
}

export async function newKey(alg = 'RS256', kid = `k-${randomBytes(4).toString('hex')}`): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return {
    kid,
    alg,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
  };
}

/** Signs a JWT with the key, its kid and alg in the header unless `header` overrides them. */
export async function signToken(
  key: Pick<TestKey, 'privateJwk' | 'kid' | 'alg'>,
  claims: JWTPayload,
  header: Partial<JWTHeaderParameters> = {},
): Promise<string> {
  const privateKey = await importJWK(key.privateJwk, key.alg);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt', ...header } as JWTHeaderParameters)
    .sign(privateKey);
}

/** Standard claims of a valid access token: iat now, exp in 10 minutes, a jti. */
export function accessClaims(
  issuer: string,
  audience: string | string[],
  sub: string,
  extra: JWTPayload = {},
) {
  const now = Math.floor(Date.now() / 1000);
  return { iss: issuer, aud: audience, sub, iat: now, exp: now + 600, jti: randomUUID(), ...extra };
}

/** `alg: none`: header and payload with an empty signature. */
export function unsignedToken(claims: JWTPayload, header: Record<string, unknown> = {}): string {
  return `${b64json({ alg: 'none', typ: 'at+jwt', ...header })}.${b64json(claims)}.`;
}

/**
 * The classic key-confusion forgery: HS256 with the issuer's *public* key (its PEM text) as the
 * HMAC secret. A verifier that lets the token choose the algorithm would accept it.
 */
export function hs256WithPublicKey(publicJwk: JWK, claims: JWTPayload, kid?: string): string {
  const pem = createPublicKey({ key: publicJwk as NodeJsonWebKey, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString();
  const signingInput = `${b64json({ alg: 'HS256', typ: 'at+jwt', ...(kid ? { kid } : {}) })}.${b64json(claims)}`;
  const signature = base64url.encode(createHmac('sha256', pem).update(signingInput).digest());
  return `${signingInput}.${signature}`;
}

/** Replaces the payload of a signed token, keeping its header and signature. */
export function tamperPayload(
  token: string,
  change: (claims: Record<string, unknown>) => Record<string, unknown>,
): string {
  const [header, payload, signature] = token.split('.') as [string, string, string];
  const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload))) as Record<string, unknown>;
  return `${header}.${b64json(change(claims))}.${signature}`;
}

/**
 * A decoy: serves an attacker's JWKS (and anything else) and counts requests. Tokens whose
 * headers point here must never cause a fetch.
 */
export async function startDecoy(attackerKey: TestKey): Promise<CountingServer> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ keys: [attackerKey.publicJwk] }));
  });
  const url = await listen(server);
  return { url, requests, close: () => closeServer(server) };
}

/**
 * A minimal issuer for key-rotation tests: a discovery document and a JWKS whose keys the test
 * changes, with request counts. (Rotation cannot be done with oidc-provider at run time.)
 */
export interface StaticIssuer extends CountingServer {
  readonly issuer: string;
  current: TestKey;
  /** Publishes a new key (the old one stays published too unless `retire`). */
  rotate(options?: { retire?: boolean }): Promise<TestKey>;
  count(path: string): number;
  /** Makes discovery answer with another `issuer` value. */
  lieAboutIssuer(value: string | undefined): void;
  /** Makes every request fail with 503. */
  setDown(down: boolean): void;
}

export async function startStaticIssuer(): Promise<StaticIssuer> {
  const requests: string[] = [];
  let keys: TestKey[] = [await newKey()];
  let claimedIssuer: string | undefined;
  let down = false;
  let url = '';
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0] as string;
    requests.push(path);
    if (down) {
      res.writeHead(503).end();
      return;
    }
    if (path === '/.well-known/openid-configuration') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          issuer: claimedIssuer ?? url,
          jwks_uri: `${url}/jwks`,
          authorization_endpoint: `${url}/auth`,
          token_endpoint: `${url}/token`,
          response_types_supported: ['code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
        }),
      );
      return;
    }
    if (path === '/jwks') {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ keys: keys.map((k) => k.publicJwk) }));
      return;
    }
    res.writeHead(404).end();
  });
  url = await listen(server);
  const issuer: StaticIssuer = {
    url,
    issuer: url,
    requests,
    current: keys[0] as TestKey,
    async rotate(options = {}) {
      const key = await newKey();
      keys = options.retire ? [key] : [...keys, key];
      issuer.current = key;
      return key;
    },
    count: (path) => requests.filter((p) => p === path).length,
    lieAboutIssuer(value) {
      claimedIssuer = value;
    },
    setDown(value) {
      down = value;
    },
    close: () => closeServer(server),
  };
  return issuer;
}
