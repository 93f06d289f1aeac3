import { Aspects, type IAspect, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as signer from 'aws-cdk-lib/aws-signer';
import { Construct, type IConstruct } from 'constructs';

export interface CofferCodeSigningProps {
  /**
   * A signing profile version to trust instead of one made here (for example the profile of a
   * build pipeline in another account): `arn:aws:signer:<region>:<account>:/signing-profiles/<name>/<version>`.
   * @default - a new AWS Signer profile for Lambda (platform AWSLambda-SHA384-ECDSA)
   */
  readonly profileVersionArn?: string;
}

/**
 * Signed code for every Lambda function in a stack: an AWS Signer profile (or an existing one)
 * and a Lambda code signing config that refuses, at deployment, any package not signed by it
 * (`UntrustedArtifactOnDeployment: Enforce`). {@link CofferCodeSigning.enforceOn} attaches the config
 * to every function of a scope, those CDK makes itself (custom resource providers) included, so
 * that a changed package is refused whichever function it belongs to.
 *
 * CDK uploads its function bundles unsigned: with this on, each bundle must be signed before
 * CloudFormation creates or updates the function (docs/deploy.md, "Signed code").
 */
export class CofferCodeSigning extends Construct {
  /** The profile the stack created, if it made one. */
  readonly profile?: signer.SigningProfile;
  readonly config: lambda.CfnCodeSigningConfig;
  /** The one signing profile version whose signatures Lambda accepts. */
  readonly profileVersionArn: string;

  constructor(scope: Construct, id: string, props: CofferCodeSigningProps = {}) {
    super(scope, id);
    if (props.profileVersionArn) {
      this.profileVersionArn = props.profileVersionArn;
    } else {
      this.profile = new signer.SigningProfile(this, 'Profile', {
        platform: signer.Platform.AWS_LAMBDA_SHA384_ECDSA,
      });
      this.profileVersionArn = this.profile.signingProfileVersionArn;
    }
    // The L1 resource: the L2 one takes profile objects whose ARNs it builds from this stack's
    // account and region, so a profile of another account could not be named.
    this.config = new lambda.CfnCodeSigningConfig(this, 'Config', {
      description: `Coffer (${Stack.of(this).stackName}): only code signed by this profile may be deployed`,
      allowedPublishers: { signingProfileVersionArns: [this.profileVersionArn] },
      codeSigningPolicies: {
        untrustedArtifactOnDeployment: lambda.UntrustedArtifactOnDeployment.ENFORCE,
      },
    });
  }

  /** Requires signed code of every Lambda function in `scope`, present and future. */
  enforceOn(scope: IConstruct): void {
    Aspects.of(scope).add(new RequireSignedCode(this.config.attrCodeSigningConfigArn));
  }
}

/**
 * Sets the code signing config on every `AWS::Lambda::Function` it visits. An aspect rather than a
 * prop of the Coffer function construct, so that functions made by CDK itself (the custom resource
 * provider framework) cannot slip through unsigned.
 */
export class RequireSignedCode implements IAspect {
  constructor(private readonly codeSigningConfigArn: string) {}

  visit(node: IConstruct): void {
    if (node instanceof lambda.CfnFunction) {
      node.codeSigningConfigArn = this.codeSigningConfigArn;
    }
  }
}
