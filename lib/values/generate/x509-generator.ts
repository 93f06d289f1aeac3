/**
 * The certificate generator's entry: `generateValue` imports this file, and only when it makes a
 * certificate. The Lambda bundles build it into a file of its own beside `index.mjs` (with
 * @peculiar/x509 and its ASN.1 libraries, about 230 KB that a cold start then never reads; see
 * infra/constructs/coffer-function.ts). Its import path must stay unique in the code base: the
 * bundle marks exactly that path external.
 */
export { generateCertificate } from './certificate.js';
