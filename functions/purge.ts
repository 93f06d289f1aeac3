import { lambdaSettings } from './env.js';
import { purgeHandler } from './purge-handler.js';

/** The scheduled purge function (EventBridge rule); settings read once, at cold start. */
export const handler = purgeHandler(lambdaSettings(process.env));
