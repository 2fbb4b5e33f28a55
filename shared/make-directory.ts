import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { TaplineError } from './errors.ts';

/**
 * `mkdir -p` that always ends. Node's own recursive mkdir (24.x) never settles on a path under
 * a file system that refuses new entries with ENOENT, /proc for one: it takes the ENOENT for a
 * missing parent, finds the parent there, and tries again forever. This one creates each missing
 * component in turn and says which one could not be made.
 */
export async function makeDirectory(path: string): Promise<void> {
  const target = resolve(path);
  const missing: string[] = [];
  for (let at = target; ; at = dirname(at)) {
    const found = await stat(at).catch((error: NodeJS.ErrnoException) => {
      // ENOTDIR: a file further up; the walk finds and names it
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
      throw notCreated(at, path, error.code);
    });
    if (found) {
      if (!found.isDirectory()) throw notADirectory(at, path);
      break;
    }
    missing.unshift(at);
    if (dirname(at) === at) break;
  }
  for (const dir of missing) {
    try {
      await mkdir(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && (await stat(dir).catch(() => undefined))?.isDirectory()) continue;
      throw notCreated(dir, path, code ?? String(error));
    }
  }
}

function notCreated(dir: string, path: string, errno: string | undefined): TaplineError {
  return new TaplineError(`cannot create the directory ${dir} (for ${path}): ${errno}`, {
    code: 'DIRECTORY_NOT_CREATED',
    details: { path, dir, errno },
  });
}

function notADirectory(at: string, path: string): TaplineError {
  return new TaplineError(`cannot create the directory ${path}: ${at} is not a directory`, {
    code: 'DIRECTORY_NOT_CREATED',
    details: { path, dir: at },
  });
}
