import { Worker } from 'node:worker_threads';

/**
 * Gzip inflation on a worker thread, for big flow-log objects and files.
 *
 * Node's own zlib stream runs each inflate call on libuv's thread pool, but the next call is
 * only issued from the main thread's event loop, which the scanner keeps busy: inflation and
 * scanning then mostly take turns. Here a worker thread inflates on its own event loop and
 * hands over 1 MiB pieces, at most `maxAhead` ahead of the consumer (bounded memory), so the
 * two really run at the same time. Errors (a damaged stream) reject with zlib's error code;
 * stopping early (a `break` in the consumer) terminates the worker and closes the source.
 *
 * The worker's code is a self-contained string (node: modules only): it needs no file of its
 * own next to the bundled handler.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createGunzip } = require('node:zlib');
const gunzip = createGunzip({ chunkSize: 1 << 20 });
let credits = 0;
let wake = null;
parentPort.on('message', (m) => {
  if (m.type === 'credit') {
    credits += 1;
    if (wake) { const w = wake; wake = null; w(); }
  } else if (m.type === 'input') {
    gunzip.write(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength), () =>
      parentPort.postMessage({ type: 'consumed' }),
    );
  } else if (m.type === 'end') {
    gunzip.end();
  }
});
gunzip.on('error', (e) => parentPort.postMessage({ type: 'error', message: e.message, code: e.code }));
(async () => {
  for await (const out of gunzip) {
    while (credits === 0) await new Promise((r) => { wake = r; });
    credits -= 1;
    const copy = new Uint8Array(out.length);
    copy.set(out);
    parentPort.postMessage({ type: 'output', chunk: copy }, [copy.buffer]);
  }
  parentPort.postMessage({ type: 'done' });
})().catch((e) => parentPort.postMessage({ type: 'error', message: e.message, code: e.code }));
`;

export interface GunzipWorkerOptions {
  /** Inflated pieces the worker may have ready ahead of the consumer. */
  maxAhead?: number;
  /** Compressed chunks in flight to the worker. */
  maxInputInFlight?: number;
}

type WorkerMessage =
  | { type: 'output'; chunk: Uint8Array }
  | { type: 'consumed' }
  | { type: 'done' }
  | { type: 'error'; message: string; code?: string };

/** Inflates a gzip byte stream (one or more members) on a worker thread. */
export async function* gunzipInWorker(
  source: AsyncIterable<Buffer | Uint8Array>,
  options: GunzipWorkerOptions = {},
): AsyncGenerator<Buffer> {
  const maxAhead = options.maxAhead ?? 4;
  const maxInput = options.maxInputInFlight ?? 4;
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  const ready: Buffer[] = [];
  let done = false;
  let failure: Error | null = null;
  let inputInFlight = 0;
  // the feeding loop and the consumer both wait for the worker's messages
  let waiters: Array<() => void> = [];
  const signal = () => {
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  };
  const next = () => new Promise<void>((resolve) => waiters.push(resolve));

  worker.on('message', (m: WorkerMessage) => {
    if (m.type === 'output') {
      ready.push(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
    } else if (m.type === 'consumed') {
      inputInFlight -= 1;
    } else if (m.type === 'done') {
      done = true;
    } else {
      failure ??= Object.assign(new Error(m.message), { code: m.code });
    }
    signal();
  });
  worker.on('error', (e) => {
    failure ??= e;
    signal();
  });
  worker.on('exit', (code) => {
    if (!done) failure ??= new Error(`gunzip worker exited (${code})`);
    signal();
  });
  for (let i = 0; i < maxAhead; i++) worker.postMessage({ type: 'credit' });

  // feed the compressed bytes, a few chunks ahead of the worker
  const iterator = source[Symbol.asyncIterator]();
  let feeding = true;
  const feed = (async () => {
    try {
      for (let r = await iterator.next(); !r.done && feeding; r = await iterator.next()) {
        while (inputInFlight >= maxInput && feeding && failure === null) await next();
        if (!feeding || failure !== null) break;
        inputInFlight += 1;
        worker.postMessage({ type: 'input', chunk: r.value });
      }
      if (feeding && failure === null) worker.postMessage({ type: 'end' });
    } catch (error) {
      failure ??= error as Error;
      signal();
    }
  })();

  try {
    for (;;) {
      if (ready.length > 0) {
        const chunk = ready.shift()!;
        worker.postMessage({ type: 'credit' });
        yield chunk;
        continue;
      }
      if (failure !== null) throw failure;
      if (done) break;
      await next();
    }
    await feed;
    if (failure !== null) throw failure;
  } finally {
    feeding = false;
    signal();
    await iterator.return?.();
    await worker.terminate();
  }
}
