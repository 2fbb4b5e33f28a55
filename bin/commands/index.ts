import type { Command } from 'commander';
import { registerLazily } from './verbs-register.ts';

/**
 * Each verb lives in its own file (bin/commands/<verb>.ts) exporting `register(program)`; it is
 * imported only when the command line runs it. When a verb lands, add its entry (name, listing
 * term, description, loader) to VERBS in bin/commands/verbs-register.ts.
 */
export async function registerCommands(
  program: Command,
  argv: readonly string[] = process.argv.slice(2),
): Promise<void> {
  await registerLazily(program, argv);
}
