import { CommanderError } from 'commander';
import { isTaplineError } from '../shared/errors.ts';

/**
 * `tapline`: the responder's command line. Output is for people by default and JSON with
 * --json. Exit codes scripts can trust: 0 ok; 1 the thing checked failed (findings, integrity,
 * a capture that did not finish); 2 usage or input error; 3 AWS or environment error.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, environment: 3 } as const;

const CHECK_FAILED = new Set(['INTEGRITY_MISMATCH', 'WAIT_TIMEOUT']);
const ENVIRONMENT = new Set(['CONFIG_INVALID', 'FUNCTION_ERROR', 'MERGE_FAILED']);

export function exitCodeFor(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (isTaplineError(error)) {
    if (CHECK_FAILED.has(error.code)) return EXIT.failed;
    if (ENVIRONMENT.has(error.code)) return EXIT.environment;
    return EXIT.usage;
  }
  return EXIT.environment;
}
