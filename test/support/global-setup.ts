import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { type MotoServer, startMoto } from '../../scripts/lib/moto-server.ts';

let moto: MotoServer | undefined;
let packageCache: string | undefined;

/**
 * One moto server for the whole test run (tests reach it with inject('motoEndpoint')), and
 * one `serverless package` per stage and params for the whole run: the test processes share
 * a cache directory (TAPLINE_PACKAGE_CACHE, read by shared/lab/packaged-template.ts) instead
 * of packaging once per test file.
 */
export async function setup(project: TestProject): Promise<void> {
  packageCache = await mkdtemp(join(tmpdir(), 'tapline-package-cache-'));
  process.env.TAPLINE_PACKAGE_CACHE = packageCache;
  moto = await startMoto();
  project.provide('motoEndpoint', moto.endpoint);
}

export async function teardown(): Promise<void> {
  await moto?.stop();
  if (packageCache) await rm(packageCache, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    motoEndpoint: string;
  }
}
