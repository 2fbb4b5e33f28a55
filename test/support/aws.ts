import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { type AwsClients, makeAwsClients } from '../../shared/aws/clients.ts';
import { parseConfig, type TaplineConfig } from '../../shared/config.ts';

/** The moto endpoint started by test/support/global-setup.ts. */
export function motoEndpoint(): string {
  return inject('motoEndpoint');
}

/** SDK clients pointed at the run's moto server, through the same factory Lambda uses. */
export function motoClients(region = 'us-east-1'): AwsClients {
  return makeAwsClients({ region, endpoint: motoEndpoint() });
}

/** A name no other test in the run uses (moto's state is shared by all test files). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** A full config for tests, with the moto endpoint; override what the test cares about. */
export function testConfig(overrides: Record<string, string> = {}): TaplineConfig {
  return parseConfig({
    STAGE: 'test',
    AWS_REGION: 'us-east-1',
    TAPLINE_AWS_ENDPOINT: motoEndpoint(),
    EVIDENCE_BUCKET: 'tapline-test-evidence',
    EVIDENCE_KEY_ID: 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000',
    CAPTURE_DOCUMENT_NAME: 'TaplineCapture-test',
    NOTIFICATION_TOPIC: 'arn:aws:sns:us-east-1:123456789012:tapline-test',
    ...overrides,
  });
}
