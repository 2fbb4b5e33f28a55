/** A byte stream whose first bytes were looked at: flow-log objects and captures may be gzip. */
export interface PeekedStream<T extends Uint8Array> {
  /** The source had no bytes at all. */
  empty: boolean;
  /** It starts with the gzip magic (1f 8b). */
  gzip: boolean;
  /**
   * The whole stream again: the chunks read to look, then the rest. Abandoning it (an early
   * return or a throw in the consumer) closes the source, so an S3 socket or a file handle is
   * not left open until garbage collection.
   */
  stream: AsyncGenerator<T>;
}

/**
 * Reads a stream's first chunks until it has two bytes (a socket may deliver one, a source may
 * yield empty chunks) to tell gzip from anything else, without copying or joining them.
 */
export async function peekGzip<T extends Uint8Array>(
  source: AsyncIterable<T>,
): Promise<PeekedStream<T>> {
  const iterator = source[Symbol.asyncIterator]();
  const head: T[] = [];
  const first: number[] = [];
  try {
    while (first.length < 2) {
      const next = await iterator.next();
      if (next.done) break;
      const chunk = next.value;
      if (chunk.length === 0) continue;
      head.push(chunk);
      for (let i = 0; i < chunk.length && first.length < 2; i++) first.push(chunk[i]!);
    }
  } catch (error) {
    await iterator.return?.();
    throw error;
  }
  return {
    empty: first.length === 0,
    gzip: first[0] === 0x1f && first[1] === 0x8b,
    stream: continued(head, iterator),
  };
}

async function* continued<T>(head: T[], iterator: AsyncIterator<T>): AsyncGenerator<T> {
  try {
    yield* head;
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) yield r.value;
  } finally {
    await iterator.return?.();
  }
}
