import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Certificates made by the `openssl` command at test time, in a temp dir that is removed
 * afterwards: nothing here is committed, no private key leaves the machine's temp dir.
 */

/** Whether the openssl command runs (tests that need it skip, saying so, when it does not). */
export function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const openssl = (args: string[], cwd: string): string =>
  execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

export interface TestCa {
  readonly name: string;
  readonly dir: string;
  readonly pem: string;
}

export interface LeafOptions {
  /** openssl -subj form: `/O=Acme/CN=agent-1`. */
  readonly subject: string;
  /** extendedKeyUsage value, or null for none (default clientAuth). */
  readonly eku?: string | null;
  /** subjectAltName entries in openssl form (`URI:spiffe://…`, `DNS:…`). */
  readonly sans?: readonly string[];
  /** YYYYMMDDHHMMSSZ; default one hour ago. */
  readonly startDate?: string;
  /** YYYYMMDDHHMMSSZ; default in thirty days. */
  readonly endDate?: string;
  /** Make a CA certificate (basicConstraints CA:TRUE). */
  readonly ca?: boolean;
}

export interface TestLeaf {
  readonly pem: string;
  readonly keyPath: string;
  readonly certPath: string;
}

const stamp = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

export class CertFactory {
  private constructor(readonly root: string) {}

  static async create(): Promise<CertFactory> {
    return new CertFactory(await mkdtemp(join(tmpdir(), 'coffer-certs-')));
  }

  /** A self-signed CA (P-256) with its own `openssl ca` database. */
  async ca(name: string, subject: string): Promise<TestCa> {
    const dir = join(this.root, name);
    await mkdir(join(dir, 'newcerts'), { recursive: true });
    await writeFile(join(dir, 'index.txt'), '');
    // A random first serial per CA, so two CAs never hand out the same serials by accident.
    await writeFile(join(dir, 'serial'), `${randomBytes(8).toString('hex').replace(/^0/, '1')}\n`);
    await writeFile(
      join(dir, 'ca.cnf'),
      [
        '[ ca ]',
        'default_ca = CA_default',
        '[ CA_default ]',
        `dir = ${dir}`,
        'database = $dir/index.txt',
        'new_certs_dir = $dir/newcerts',
        'serial = $dir/serial',
        'default_md = sha256',
        'policy = policy_any',
        'unique_subject = no',
        'copy_extensions = none',
        '[ policy_any ]',
        'commonName = optional',
        'organizationName = optional',
        'organizationalUnitName = optional',
        'countryName = optional',
        '',
      ].join('\n'),
    );
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'ca.key',
        '-out',
        'ca.pem',
        '-subj',
        subject,
        '-days',
        '30',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    return { name, dir, pem: await readFile(join(dir, 'ca.pem'), 'utf8') };
  }

  /** A certificate signed by `ca`, made with `openssl ca` (which can back-date validity). */
  async leaf(ca: TestCa, name: string, options: LeafOptions): Promise<TestLeaf> {
    const dir = ca.dir;
    const ext = [
      '[ v3 ]',
      `basicConstraints = ${options.ca ? 'critical,CA:TRUE' : 'CA:FALSE'}`,
      ...(options.eku === null ? [] : [`extendedKeyUsage = ${options.eku ?? 'clientAuth'}`]),
      ...(options.sans && options.sans.length > 0 ? [`subjectAltName = ${options.sans.join(',')}`] : []),
      '',
    ].join('\n');
    await writeFile(join(dir, `${name}.ext`), ext);
    openssl(
      [
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.csr`,
        '-subj',
        options.subject,
      ],
      dir,
    );
    const now = Date.now();
    openssl(
      [
        'ca',
        '-batch',
        '-config',
        'ca.cnf',
        '-cert',
        'ca.pem',
        '-keyfile',
        'ca.key',
        '-in',
        `${name}.csr`,
        '-out',
        `${name}.pem`,
        '-notext',
        '-preserveDN',
        '-startdate',
        options.startDate ?? stamp(new Date(now - 3600_000)),
        '-enddate',
        options.endDate ?? stamp(new Date(now + 30 * 86400_000)),
        '-extfile',
        `${name}.ext`,
        '-extensions',
        'v3',
      ],
      dir,
    );
    return {
      pem: await readFile(join(dir, `${name}.pem`), 'utf8'),
      keyPath: join(dir, `${name}.key`),
      certPath: join(dir, `${name}.pem`),
    };
  }

  /** What `openssl x509` says about a certificate (`-serial`, `-fingerprint -sha256`, `-subject -nameopt RFC2253`). */
  inspect(certPath: string, args: string[]): string {
    return openssl(['x509', '-in', certPath, '-noout', ...args], this.root).trim();
  }

  async close(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}

export const dateStamp = stamp;
