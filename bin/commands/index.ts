import type { Command } from 'commander';
import { register as registerSummarize } from './summarize.ts';

/**
 * Each verb lives in its own file (bin/commands/<verb>.ts) exporting `register(program)`.
 * Add the import here when a verb lands.
 */
export function registerCommands(program: Command): void {
  registerSummarize(program);
}
