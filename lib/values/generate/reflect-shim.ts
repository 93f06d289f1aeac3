/*
 * @peculiar/x509 registers its algorithms with tsyringe, which refuses to load unless the
 * `reflect-metadata` polyfill's functions exist, and reads (never needs) constructor parameter
 * types through them. These three functions, kept in a WeakMap, are all of that API it calls; a
 * real polyfill, if one is loaded first, is left alone. Imported only by certificate.ts, which is
 * only ever loaded on the certificate generation path.
 */

type MetadataReflect = typeof Reflect & {
  getMetadata?: (key: unknown, target: object) => unknown;
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
};

const reflect = Reflect as MetadataReflect;

if (typeof reflect.getMetadata !== 'function') {
  const store = new WeakMap<object, Map<unknown, unknown>>();
  const own = (key: unknown, target: object) => store.get(target)?.get(key);
  reflect.defineMetadata = (key, value, target) => {
    let map = store.get(target);
    if (!map) {
      map = new Map();
      store.set(target, map);
    }
    map.set(key, value);
  };
  reflect.getOwnMetadata = own;
  reflect.getMetadata = (key, target) => {
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t)) {
      const value = own(key, t);
      if (value !== undefined) return value;
    }
    return undefined;
  };
}

export {};
