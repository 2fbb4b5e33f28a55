import type { TestProject } from 'vitest/node';
import { type MotoServer, startMoto } from '../../scripts/lib/moto-server.ts';

let moto: MotoServer | undefined;

/** One moto server for the whole test run; tests reach it with inject('motoEndpoint'). */
export async function setup(project: TestProject): Promise<void> {
  moto = await startMoto();
  project.provide('motoEndpoint', moto.endpoint);
}

export async function teardown(): Promise<void> {
  await moto?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    motoEndpoint: string;
  }
}
