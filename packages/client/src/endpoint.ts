import { CofferClientError } from './errors.js';

/** The server's base address as a URL; anything but an http(s) URL is `invalid_endpoint`. */
export function parseEndpoint(endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new CofferClientError('invalid_endpoint', 0, 'endpoint must be an http(s) URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CofferClientError('invalid_endpoint', 0, 'endpoint must be an http(s) URL');
  }
  return url;
}
