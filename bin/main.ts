import { Command, CommanderError } from 'commander';
import { isTaplineError } from '../shared/errors.ts';
import { registerCommands } from './commands/index.ts';

/**
 * `tapline`: the responder's command line. Output is for people by default and JSON with
 * --json. Exit codes: 0 ok, 1 the thing checked failed (findings, integrity), 2 usage or
 * input error, 3 AWS or environment error.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, environment: 3 } as const;

const program = new Command()
  .name('tapline')
  .description('Event-driven packet capture for AWS: capture, fetch, summarize, detect.')
  .showHelpAfterError()
  .exitOverride();

registerCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? 0 : EXIT.usage;
  } else if (isTaplineError(error)) {
    process.stderr.write(`tapline: ${error.message}\n`);
    process.exitCode = error.code === 'CONFIG_INVALID' ? EXIT.environment : EXIT.usage;
  } else {
    process.stderr.write(
      `tapline: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = EXIT.environment;
  }
}
