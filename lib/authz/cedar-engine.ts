/**
 * The one place that imports the Cedar engine. The `/nodejs` build loads its `.wasm` file
 * synchronously from beside its own JavaScript, which keeps `authorize()` synchronous; a Lambda
 * bundle must ship `cedar_wasm_bg.wasm` next to the bundled code.
 */

export type {
  AuthorizationAnswer,
  DetailedError,
  EntityJson,
  EntityUidJson,
  PolicyJson,
  SchemaJson,
} from '@cedar-policy/cedar-wasm/nodejs';
export * as cedar from '@cedar-policy/cedar-wasm/nodejs';
