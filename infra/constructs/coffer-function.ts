import { join } from 'node:path';
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat, SourceMapMode } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { REPO_ROOT } from '../paths.js';

/**
 * An ESM bundle still holds CommonJS dependencies (the Cedar wasm glue, parts of the SDK) that call
 * `require` and read `__dirname`; ESM has neither, so the bundle defines them from its own URL.
 */
const ESM_SHIM = [
  "import { createRequire as __cofferRequire } from 'node:module';",
  "import { fileURLToPath as __cofferPath } from 'node:url';",
  "import { dirname as __cofferDir } from 'node:path';",
  'const require = __cofferRequire(import.meta.url);',
  'const __filename = __cofferPath(import.meta.url);',
  'const __dirname = __cofferDir(__filename);',
].join(' ');

/** The Cedar engine's wasm, loaded at run time from `${__dirname}/cedar_wasm_bg.wasm`. */
const CEDAR_WASM = 'node_modules/@cedar-policy/cedar-wasm/nodejs/cedar_wasm_bg.wasm';

/**
 * The certificate generator (@peculiar/x509 and its ASN.1 libraries, ~230 KB minified) is
 * imported by this path, only when a certificate is made. The bundle leaves the import as it is
 * and the generator is built into a file of its own beside `index.mjs`, so a cold start neither
 * reads nor compiles it (lib/values/generate/x509-generator.ts).
 */
export const X509_GENERATOR_IMPORT = './x509-generator.js';

/**
 * The Lambda rotator invoker (the Lambda client, ~70 KB minified) is imported by this path, only
 * when a rotation calls a Lambda rotator (functions/aws.ts): built beside `index.mjs` the same way.
 */
export const ROTATOR_LAMBDA_IMPORT = './rotator-lambda.js';

/** The modules built into files of their own beside `index.mjs`, by import path. */
const SIDE_MODULES: readonly { readonly importPath: string; readonly source: string }[] = [
  { importPath: X509_GENERATOR_IMPORT, source: 'lib/values/generate/x509-generator.ts' },
  { importPath: ROTATOR_LAMBDA_IMPORT, source: 'functions/rotator-lambda.ts' },
];

/**
 * A Lambda function's credentials are the execution role's, in its environment: the SDK's full
 * default chain (SSO, profiles, web identity, instance metadata, with the nested STS, SSO and
 * sign-in clients, ~100 KB) is replaced by an environment-only provider of the same shape.
 */
const CREDENTIALS_ALIAS = '@aws-sdk/credential-provider-node=./functions/lambda-credentials.ts';

/**
 * Shell steps that build the side modules beside the bundle with the repository's own esbuild
 * (offline, no Docker): the same target, shims and credential alias as the bundle, ESM, marked as
 * such by a package.json (their import paths end in `.js`).
 */
function sideModuleSteps(inputDir: string, outputDir: string): string[] {
  return [
    ...SIDE_MODULES.map(({ importPath, source }) =>
      [
        `"${inputDir}/node_modules/.bin/esbuild" "${inputDir}/${source}"`,
        '--bundle --platform=node --format=esm --target=node22 --main-fields=module,main',
        '--minify --keep-names --sourcemap --sources-content=false --log-level=warning',
        `--alias:${CREDENTIALS_ALIAS}`,
        `--banner:js="${ESM_SHIM}"`,
        `--outfile="${outputDir}/${importPath.slice(2)}"`,
      ].join(' '),
    ),
    `echo '{"type":"module"}' > "${outputDir}/package.json"`,
  ];
}

export interface CofferFunctionProps {
  /** The handler's source file, relative to the repository root (for example `functions/api.ts`). */
  readonly entry: string;
  /** The exported handler. @default 'handler' */
  readonly handler?: string;
  readonly description: string;
  /** Environment variables: table names, key ARNs, settings. No secret ever goes here. */
  readonly environment?: Readonly<Record<string, string>>;
  /** @default 1024 (crypto and cold starts are faster with more CPU) */
  readonly memorySize?: number;
  /** @default Duration.seconds(10) */
  readonly timeout?: Duration;
  /** Retention of the function's log group. */
  readonly logRetention: logs.RetentionDays;
  /**
   * Ship the Cedar engine's `.wasm` and the `policies/` directory beside the bundle, for functions
   * that authorize requests. @default false
   */
  readonly shipsPolicies?: boolean;
  /** @default - unreserved */
  readonly reservedConcurrentExecutions?: number;
}

/**
 * One Coffer Lambda function: bundled from TypeScript with the local esbuild (no Docker), as a
 * minified ESM bundle with source maps, on Node.js 22 and arm64, with its own log group (retention
 * set, retained on stack delete: it holds the audit copy) and its own role, which starts with
 * nothing but writing to that log group. Callers add exactly the permissions it needs.
 */
export class CofferFunction extends Construct {
  readonly function: NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: CofferFunctionProps) {
    super(scope, id);

    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Not AWSLambdaBasicExecutionRole: that managed policy may write to any log group.
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Coffer ${id} function`,
      inlinePolicies: {
        logs: new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
              resources: [this.logGroup.logGroupArn],
            }),
          ],
        }),
      },
    });

    const shipsPolicies = props.shipsPolicies ?? false;
    this.function = new NodejsFunction(this, 'Function', {
      entry: join(REPO_ROOT, props.entry),
      handler: props.handler ?? 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 1024,
      timeout: props.timeout ?? Duration.seconds(10),
      role: this.role,
      logGroup: this.logGroup,
      // Stack frames in logs point at the TypeScript sources, through the bundle's source map.
      environment: { NODE_OPTIONS: '--enable-source-maps', ...props.environment },
      ...(props.reservedConcurrentExecutions !== undefined
        ? { reservedConcurrentExecutions: props.reservedConcurrentExecutions }
        : {}),
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: 'node22',
        mainFields: ['module', 'main'],
        minify: true,
        // Error class names appear in logs (`errorName`); minified names would say nothing.
        keepNames: true,
        sourceMap: true,
        sourceMapMode: SourceMapMode.DEFAULT,
        sourcesContent: false,
        // The SDK versions this code was tested with, not whatever the runtime carries today
        // (and the CloudHSM client is pinned to an old release on purpose).
        bundleAwsSDK: true,
        banner: ESM_SHIM,
        // esbuild's warnings and errors only, not its size summary on every synth.
        logLevel: LogLevel.WARNING,
        externalModules: SIDE_MODULES.map((m) => m.importPath),
        esbuildArgs: { '--alias': CREDENTIALS_ALIAS },
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir: string, outputDir: string) => [
            ...sideModuleSteps(inputDir, outputDir),
            ...(shipsPolicies
              ? [
                  `cp "${inputDir}/${CEDAR_WASM}" "${outputDir}/cedar_wasm_bg.wasm"`,
                  `if [ -d "${inputDir}/policies" ]; then cp -R "${inputDir}/policies" "${outputDir}/policies" && rm -rf "${outputDir}/policies/tests" "${outputDir}/policies/examples"; fi`,
                ]
              : []),
          ],
        },
      },
    });
    // Acknowledged on this function only: a function added without CofferFunction is still checked.
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'Coffer pins Node.js 22 (the runtime its code and bundles are built and tested for); moving to a newer runtime is a deliberate upgrade.',
    });
  }
}
