import type { CoreLogger } from '../../shared/observability.ts';

export interface LoggedEntry {
  message: string;
  extra: unknown;
}

/** `base` with its error() recording each call in `errors` instead (the rest unchanged). */
export function loggerRecordingErrors(base: CoreLogger): {
  logger: CoreLogger;
  errors: LoggedEntry[];
} {
  const errors: LoggedEntry[] = [];
  const logger: CoreLogger = {
    ...base,
    error: (message: string, extra?: unknown) => {
      errors.push({ message, extra });
    },
  };
  return { logger, errors };
}
