import { awsSettingsFromEnv, makeAwsClients } from '../aws/clients.ts';
import { getConfig } from '../config.ts';
import type { CoreLogger } from '../observability.ts';
import type { CaptureDeps } from './start-capture.ts';

/** Deps for the Lambda handlers: clients from TAPLINE_AWS_ENDPOINT/AWS_REGION, config from env. */
export function captureDepsFromEnv(logger: CoreLogger): CaptureDeps {
  return {
    clients: makeAwsClients(awsSettingsFromEnv()),
    config: getConfig(),
    logger,
  };
}
