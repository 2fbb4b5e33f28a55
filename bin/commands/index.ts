import type { Command } from 'commander';
import { register as registerCapture } from './capture.ts';
import { register as registerDetect } from './detect.ts';
import { register as registerFetch } from './fetch.ts';
import { register as registerLab } from './lab.ts';
import { register as registerList } from './list.ts';
import { register as registerPlan } from './plan.ts';
import { register as registerStatus } from './status.ts';
import { register as registerSummarize } from './summarize.ts';

/**
 * Each verb lives in its own file (bin/commands/<verb>.ts) exporting `register(program)`.
 * Add the import here when a verb lands.
 */
export function registerCommands(program: Command): void {
  registerCapture(program);
  registerStatus(program);
  registerList(program);
  registerFetch(program);
  registerPlan(program);
  registerSummarize(program);
  registerDetect(program);
  registerLab(program);
}
