import { checkpointHandler } from './checkpoint-handler.js';
import { lambdaSettings } from './env.js';

/** The scheduled audit checkpoint function (EventBridge rule); settings read once, at cold start. */
export const handler = checkpointHandler(lambdaSettings(process.env));
