import { App, type AppProps, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { CofferStack } from './coffer-stack.js';
import { pinnedFeatureFlags } from './feature-flags.js';
import { type CofferSettings, checkContextKeys, readSettings } from './settings.js';

export interface CofferApp {
  readonly app: App;
  readonly stack: CofferStack;
  readonly settings: CofferSettings;
}

/**
 * Builds the CDK app: settings from context, the stack, and cdk-nag's AWS Solutions checks as a
 * policy validation plugin (violations fail `cdk synth`). `props.context` lets tests synthesize
 * each mode without touching cdk.json.
 *
 * The feature flags pinned in cdk.json are set here too, as the lowest precedence context, so that
 * `cdk synth` and the tests synthesize the very same template (see infra/feature-flags.ts).
 */
export function createCofferApp(props: AppProps = {}, baseDir?: string): CofferApp {
  const app = new App({ ...props, context: { ...pinnedFeatureFlags(), ...props.context } });
  checkContextKeys(Object.keys(app.node.getAllContext() as Record<string, unknown>));
  const settings = readSettings((key) => app.node.tryGetContext(key), baseDir);
  const stack = new CofferStack(app, settings.stackName, {
    settings,
    description: `Coffer secrets manager (key store: ${settings.keyStore})`,
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack, settings };
}
