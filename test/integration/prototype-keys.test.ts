import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * Tag keys are user-controlled object keys. Names that an ordinary object inherits
 * (`constructor`, `toString`, `hasOwnProperty`, `__proto__`…) must be plain keys everywhere a tag
 * goes: validation, merging, the stored item, Cedar entity tags and the answer.
 */
const PROTOTYPE_KEYS = [
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  'isPrototypeOf',
  '__defineGetter__',
];

let h: Harness;
beforeAll(async () => {
  h = await createHarness({ label: 'proto' });
});

const tagsOf = (keys: readonly string[], value: string) =>
  Object.fromEntries(keys.map((k) => [k, `${value}-${k}`]));

describe('tag keys named like Object.prototype members', () => {
  it('when a PUT carries them, it stores them and metadata returns them unchanged', async () => {
    const tags = tagsOf(PROTOTYPE_KEYS, 'v1');
    const put = await h.call('PUT', '/v1/secrets/proto/put', { body: { value: 'x', tags } });
    expect(put.status).toBe(200);
    const meta = await h.call('GET', '/v1/meta/proto/put');
    expect(meta.status).toBe(200);
    expect(meta.body.tags).toEqual(tags);
  });

  it('when a PATCH carries them, it stores them and a later PUT without tags keeps them', async () => {
    await h.call('PUT', '/v1/secrets/proto/patch', { body: { value: 'x' } });
    const tags = tagsOf(PROTOTYPE_KEYS, 'p');
    const patch = await h.call('PATCH', '/v1/meta/proto/patch', { body: { tags } });
    expect(patch.status).toBe(200);
    expect(patch.body.tags).toEqual(tags);
    expect((await h.call('PUT', '/v1/secrets/proto/patch', { body: { value: 'y' } })).status).toBe(200);
    expect((await h.call('GET', '/v1/meta/proto/patch')).body.tags).toEqual(tags);
  });

  it('when a body spells "__proto__" as a key, it is refused with 400, never stored or 500', async () => {
    const raw = '{"value":"x","tags":{"__proto__":"v"}}';
    const put = await h.call('PUT', '/v1/secrets/proto/dunder', { body: raw });
    expect(put.status).toBe(400);
    expect(put.body.error.code).toBe('invalid_request');
    const patch = await h.call('PATCH', '/v1/meta/proto/put', { body: '{"tags":{"__proto__":"v"}}' });
    expect(patch.status).toBe(400);
  });

  it('when secrets with such tags are listed, the list answers 200', async () => {
    const list = await h.call('GET', '/v1/list?prefix=proto/');
    expect(list.status).toBe(200);
    expect(list.body.items.map((i: { path: string }) => i.path)).toEqual(['proto/patch', 'proto/put']);
  });
});

describe('Cedar tag policies over prototype-named keys', () => {
  let c: Harness;
  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-proto-policies-'));
    await copyFile(
      fileURLToPath(new URL('../../policies/schema.cedarschema', import.meta.url)),
      join(dir, 'schema.cedarschema'),
    );
    await writeFile(
      join(dir, 'tags.cedar'),
      `permit (principal, action, resource);
       forbid (principal, action == Coffer::Action::"read", resource is Coffer::Secret)
         when { resource.hasTag("constructor") && resource.getTag("constructor") == "locked" };`,
    );
    const authorizer = await CedarAuthorizer.fromDir(dir, { logger: jsonLogger(() => {}) });
    c = await createHarness({ label: 'protocedar', authorizer });
  });

  it('when a forbid reads tag "constructor", it applies to secrets carrying it and only to them', async () => {
    const locked = await c.call('PUT', '/v1/secrets/pc/locked', {
      body: { value: 'x', tags: { constructor: 'locked', toString: 'a' } },
    });
    expect(locked.status).toBe(200);
    expect((await c.call('GET', '/v1/secrets/pc/locked')).status).toBe(403);
    await c.call('PUT', '/v1/secrets/pc/open', { body: { value: 'x', tags: { toString: 'b' } } });
    expect((await c.call('GET', '/v1/secrets/pc/open')).status).toBe(200);
    // A secret without the tag: hasTag is false, not an inherited Object.prototype.constructor.
    await c.call('PUT', '/v1/secrets/pc/bare', { body: { value: 'x' } });
    expect((await c.call('GET', '/v1/secrets/pc/bare')).status).toBe(200);
  });
});
