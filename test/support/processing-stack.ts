/**
 * The processing stack (bucket, key, topic, queues on moto) that a test file's tests share,
 * created once before they run.
 */
import { beforeAll } from 'vitest';
import { createProcessingStack, type ProcessingStack } from '../fixtures/processing/stack.ts';
import { motoClients } from './aws.ts';

/**
 * Registers a `beforeAll` that creates the file's processing stack on moto, and returns the
 * stack: its fields are filled in by that `beforeAll`, so use it inside tests and hooks only.
 */
export function processingStackBeforeAll(): ProcessingStack {
  const stack = {} as ProcessingStack;
  beforeAll(async () => {
    Object.assign(stack, await createProcessingStack(motoClients()));
  });
  return stack;
}
