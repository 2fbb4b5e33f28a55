import type { Command } from 'commander';

/**
 * Each verb lives in its own file (bin/commands/<verb>.ts) exporting `register(program)`.
 * Add the import here when a verb lands.
 */
export function registerCommands(_program: Command): void {}
