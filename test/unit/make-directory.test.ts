import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDirectory } from '../../shared/make-directory.ts';

const binPath = new URL('../../bin/tapline', import.meta.url).pathname;
const node = new URL('../../node_modules/.bin/node', import.meta.url).pathname;
const pcap = new URL('../fixtures/processing/port-zero.pcap', import.meta.url).pathname;

describe('makeDirectory: mkdir -p that always ends', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'tapline-mkdir-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('creates every missing component, and accepts a directory that is there', async () => {
    const deep = join(root, 'a', 'b', 'c');
    await makeDirectory(deep);
    expect(statSync(deep).isDirectory()).toBe(true);
    await makeDirectory(deep);
    await makeDirectory(root);
  });

  it('names the file in the way', async () => {
    await writeFile(join(root, 'file'), 'x');
    await expect(makeDirectory(join(root, 'file', 'sub'))).rejects.toMatchObject({
      code: 'DIRECTORY_NOT_CREATED',
      message: expect.stringContaining(`${join(root, 'file')} is not a directory`),
    });
  });

  it('says so, typed, when a symbolic link loops', async () => {
    await symlink(join(root, 'loop-b'), join(root, 'loop-a'));
    await symlink(join(root, 'loop-a'), join(root, 'loop-b'));
    await expect(makeDirectory(join(root, 'loop-a', 'x'))).rejects.toMatchObject({
      code: 'DIRECTORY_NOT_CREATED',
      message: expect.stringContaining('ELOOP'),
    });
  });

  it.runIf(existsSync('/proc/self'))(
    'says it cannot create one under /proc (where Node 24’s recursive mkdir never settles)',
    async () => {
      await expect(makeDirectory('/proc/tapline-x/y')).rejects.toMatchObject({
        code: 'DIRECTORY_NOT_CREATED',
        message: expect.stringContaining('cannot create the directory /proc/tapline-x'),
      });
    },
  );

  it.runIf(existsSync('/proc/self'))(
    '`tapline summarize --carve` into such a place ends with a usage error',
    () => {
      const run = spawnSync(node, [binPath, 'summarize', pcap, '--carve', '/proc/tapline-x'], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(run.signal).toBeNull();
      expect(run.status).toBe(2);
      expect(run.stderr).toContain('cannot create the directory /proc/tapline-x');
    },
  );
});
