import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';

/** Structured JSON logs (Powertools). One logger per function, named by its service. */
export function makeLogger(serviceName: string): Logger {
  return new Logger({ serviceName: `tapline-${serviceName}` });
}

/** CloudWatch EMF metrics under the Tapline namespace. */
export function makeMetrics(serviceName: string): Metrics {
  return new Metrics({ namespace: 'Tapline', serviceName: `tapline-${serviceName}` });
}

/** The smallest logger surface the core needs, so the CLI and tests can pass their own. */
export interface CoreLogger {
  debug(message: string, ...extra: unknown[]): void;
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
}

export const silentLogger: CoreLogger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
