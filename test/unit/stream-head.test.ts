import { describe, expect, it } from 'vitest';
import { peekGzip } from '../../shared/stream-head.ts';

/** A source of the given chunks that records whether it was closed. */
function source(chunks: number[][], failAt = -1) {
  const state = { closed: false, pulled: 0 };
  const iterable: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]() {
      let i = 0;
      return {
        async next() {
          if (i === failAt) throw new Error('socket reset');
          if (i >= chunks.length) return { done: true, value: undefined };
          state.pulled += 1;
          return { done: false, value: Uint8Array.from(chunks[i++]!) };
        },
        async return() {
          state.closed = true;
          return { done: true, value: undefined };
        },
      };
    },
  };
  return { iterable, state };
}

async function all(stream: AsyncIterable<Uint8Array>): Promise<number[]> {
  const out: number[] = [];
  for await (const c of stream) out.push(...c);
  return out;
}

describe('peekGzip', () => {
  it('spots the gzip magic split over one-byte and empty chunks, and gives every byte back', async () => {
    const { iterable } = source([[], [0x1f], [], [0x8b, 8], [0, 1, 2]]);
    const peeked = await peekGzip(iterable);
    expect(peeked).toMatchObject({ empty: false, gzip: true });
    expect(await all(peeked.stream)).toEqual([0x1f, 0x8b, 8, 0, 1, 2]);
  });

  it('reads no further than it needs to look', async () => {
    const { iterable, state } = source([[0xd4, 0xc3, 0xb2, 0xa1], [1], [2]]);
    const peeked = await peekGzip(iterable);
    expect(peeked.gzip).toBe(false);
    expect(state.pulled).toBe(1);
  });

  it('tells an empty source and a one-byte source from gzip', async () => {
    const empty = await peekGzip(source([[], []]).iterable);
    expect(empty).toMatchObject({ empty: true, gzip: false });
    expect(await all(empty.stream)).toEqual([]);
    const one = await peekGzip(source([[0x1f]]).iterable);
    expect(one).toMatchObject({ empty: false, gzip: false });
    expect(await all(one.stream)).toEqual([0x1f]);
  });

  it('closes the source when the consumer abandons the stream', async () => {
    const { iterable, state } = source([[0x1f, 0x8b], [1], [2], [3]]);
    const peeked = await peekGzip(iterable);
    for await (const c of peeked.stream) if (c[0] === 1) break;
    expect(state.closed).toBe(true);
  });

  it('closes the source and passes its error on when it fails while being looked at', async () => {
    const { iterable, state } = source([[0x1f]], 1);
    await expect(peekGzip(iterable)).rejects.toThrow('socket reset');
    expect(state.closed).toBe(true);
  });
});
