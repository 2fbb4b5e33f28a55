import { Command, CommanderError } from 'commander';
import { isTaplineError } from '../shared/errors.ts';
import { registerCommands } from './commands/index.ts';
import { exitCodeFor } from './exit-codes.ts';

/** What to do next, for the errors people meet most. */
function hint(error: unknown): string {
  const name = (error as { name?: string })?.name ?? '';
  if (name === 'CredentialsProviderError')
    return ' (no AWS credentials: set AWS_PROFILE or run `aws sso login`)';
  if (name === 'NoSuchBucket')
    return ' (no such evidence bucket: check --stage, --region or --bucket)';
  if (name === 'AccessDenied' || name === 'AccessDeniedException')
    return ' (access denied: check your role’s permissions)';
  return '';
}

const program = new Command()
  .name('tapline')
  .description(
    'Event-driven packet capture for AWS: capture, status, fetch, summarize, detect, plan, lab.',
  )
  .showHelpAfterError()
  .exitOverride();

try {
  // Only the verb this command line runs is imported (see bin/commands/verbs-register.ts).
  await registerCommands(program, process.argv.slice(2));
  await program.parseAsync(process.argv);
} catch (error) {
  if (!(error instanceof CommanderError)) {
    const message = isTaplineError(error)
      ? error.message
      : `${(error as Error)?.name ?? 'Error'}: ${(error as Error)?.message ?? String(error)}${hint(error)}`;
    process.stderr.write(`tapline: ${message}\n`);
    if (process.env.TAPLINE_DEBUG && error instanceof Error)
      process.stderr.write(`${error.stack}\n`);
  }
  process.exitCode = exitCodeFor(error);
}
