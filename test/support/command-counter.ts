/** Counting the commands SDK clients really send (to moto), by command name. */

interface MiddlewareClient {
  middlewareStack: { add: (...args: any[]) => void };
}

/**
 * Adds a counting middleware to each client and returns the live counts (`'PublishCommand'` →
 * calls so far); `clear()` it to count from a point on.
 */
export function countCommands(...clients: MiddlewareClient[]): Map<string, number> {
  const calls = new Map<string, number>();
  for (const client of clients) {
    client.middlewareStack.add(
      (next: (args: unknown) => Promise<unknown>, ctx: { commandName?: string }) =>
        async (args: unknown) => {
          calls.set(ctx.commandName!, (calls.get(ctx.commandName!) ?? 0) + 1);
          return next(args);
        },
      { step: 'initialize', name: 'countCalls' },
    );
  }
  return calls;
}
