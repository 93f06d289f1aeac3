import { lambdaSettings } from './env.js';
import { rotationHandler } from './rotation-handler.js';

/** The scheduled rotation function (EventBridge rule); settings read once, at cold start. */
export const handler = rotationHandler(lambdaSettings(process.env));
