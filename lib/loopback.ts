const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/**
 * True for a URL on this machine. Its own module, free of the config schema, so that the CLI can
 * ask it on every run without loading the config file parser.
 */
export function isLoopbackUrl(url: URL): boolean {
  return LOOPBACK_HOSTS.has(url.hostname);
}
