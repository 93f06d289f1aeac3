import { lambdaSettings } from './env.js';
import { rewrapHandler } from './rewrap-handler.js';

/** The scheduled re-wrap function (EventBridge rule); settings read once, at cold start. */
export const handler = rewrapHandler(lambdaSettings(process.env));
